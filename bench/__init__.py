"""The imagegate performance benchmark: gateway against a direct call to the same fake upstream.

Run it with ``python bench/run.py`` (see bench/README.md). The modules are importable, so a test
can run a tiny benchmark: ``asyncio.run(bench.run.run_benchmark(bench.run.Plan.tiny()))``.
"""
