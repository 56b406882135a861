"""The embedded default configuration, which is also what `imagegate init` writes.

One text serves both, so the starter file an operator edits is exactly what runs with no file.
"""

DEFAULT_CONFIG = """\
# imagegate configuration. Check it with `imagegate check-config FILE`.
# Secrets never go in this file: upstream keys are named by the environment variable holding them.

server:
  host: 127.0.0.1            # beyond loopback, configure auth.keys (the gateway refuses otherwise)
  port: 8080
  data_dir: ./imagegate-data # stored images (response_format=url)
  max_body_mb: 64            # larger request bodies get 413
  request_timeout_seconds: 300
  image_url_ttl_seconds: 3600
  # public_url: https://images.example.com   # base of image URLs given to clients

auth:
  keys: []                   # empty, and no `imagegate keys create` key: open (loopback only)
  # keys:                    # static keys; `imagegate keys create` makes keys in the database
  #   - name: my-app
  #     key_env: IMAGEGATE_KEY_MY_APP   # or  sha256: <hex digest of the key>
  #     routes: [sim-image]             # optional limits, as for database keys
  #     images_per_minute: 10
  #     budget_usd_per_day: 5
  admin_token_env: IMAGEGATE_ADMIN_TOKEN  # the admin API answers to this token; unset: off

database:                    # client keys and the ledger; migrated on start
  url: null                  # default: SQLite at <data_dir>/imagegate.db
  # url_env: IMAGEGATE_DATABASE_URL   # e.g. postgresql+asyncpg://user:pass@host/db

ledger:
  durability: process        # bookings survive a killed process; fsync: a machine crash too

providers:
  sim:
    kind: simulator          # built-in test/demo provider: real images, no key, no network
  # google:
  #   kind: gemini
  #   keys: [GEMINI_API_KEY]           # several names make a pool of keys
  # openai:
  #   kind: openai
  #   keys: [OPENAI_API_KEY]

deployments:
  sim-default:
    provider: sim
    model: sim-image
  sim-flaky:
    provider: sim
    model: sim-image
    options: {fail_rate: 0.5, fail_kind: unavailable}
  # gemini-flash:
  #   provider: google
  #   model: gemini-2.5-flash-image
  #   limits: {images_per_minute: 10}
  #   price: {per_image: 0.039}         # what the ledger books per image (see README)
  # gpt-image:
  #   provider: openai
  #   model: gpt-image-1.5

routes:
  sim-image: [sim-default]
  sim-flaky: [sim-flaky, sim-default]  # half of sim-flaky's calls fail; sim-default catches them
  # image: [gemini-flash, gpt-image]
"""
