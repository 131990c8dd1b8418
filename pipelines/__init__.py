"""DVC stage entry points: read params, call vaebench, write outputs atomically, log to MLflow."""
