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
  # vertex:                            # pip install 'imagegate[vertex]'
  #   kind: vertex
  #   options: {project: my-project, location: global, service_account_file: /secrets/sa.json}
  # azure:
  #   kind: azure-openai
  #   base_url: https://my-resource.openai.azure.com
  #   keys: [AZURE_OPENAI_API_KEY]
  # relay:                             # any service speaking OpenAI's Images API
  #   kind: openai-compatible
  #   base_url: https://relay.example.com/v1
  #   keys: [RELAY_API_KEY]
  # bfl:  {kind: bfl, keys: [BFL_API_KEY]}
  # fal:  {kind: fal, keys: [FAL_KEY]}
  # replicate: {kind: replicate, keys: [REPLICATE_API_TOKEN]}
  # gpu:  {kind: local}                # pip install 'imagegate[local]'

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
  #   model: gpt-image-1.5            # capabilities and list price come from the model catalog
  # flux:
  #   provider: bfl
  #   model: flux-2-pro
  # sdxl:
  #   provider: gpu
  #   model: /models/my-saved-pipeline   # a diffusers pipeline folder
  #   options: {device: cuda, steps: 25}

routes:
  sim-image: [sim-default]
  sim-flaky: [sim-flaky, sim-default]  # half of sim-flaky's calls fail; sim-default catches them
  # image: [gemini-flash, gpt-image]
  # flux:
  #   candidates: [flux]
  #   on_mismatch: fall_over           # a wrong image size: fall_over | fail | accept
  #   resize: false                    # true: resize right-aspect images to the exact size

# lifecycle:
#   on_retired: successor              # a retired model: its successor serves (with a warning),
#                                      # or `refuse` (404 model_retired naming the successor)
# catalog:                             # extend or override the shipped model catalog
#   openai-compatible:
#     my-relay-model: {like: openai/gpt-image-1.5, capabilities: {max_n: 1}}
"""
