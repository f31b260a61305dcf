"""`python -m api`: serve the API on BATON_API_HOST:BATON_API_PORT.

Logs as BATON_LOG_FORMAT/BATON_LOG_LEVEL say, exports traces when OTEL_EXPORTER_OTLP_ENDPOINT is
set (`baton.telemetry`); its metrics are at /metrics.
"""

import sys

import uvicorn

from api.app import create_app
from baton.errors import BatonError
from baton.settings import Settings
from baton.telemetry import configure_logging, configure_tracing

if __name__ == "__main__":
    try:
        configure_logging()
        configure_tracing("baton-api")
        settings = Settings()
        app = create_app(settings)
    except BatonError as exc:
        sys.exit(f"error: {exc}")
    # log_config=None keeps the logging configured above; uvicorn's access log is replaced by
    # Baton's own line per webhook delivery.
    uvicorn.run(
        app, host=settings.api_host, port=settings.api_port, log_config=None, access_log=False
    )
