"""`python -m api`: serve the API on BATON_API_HOST:BATON_API_PORT."""

import uvicorn

from api.app import create_app
from baton.settings import Settings

if __name__ == "__main__":
    settings = Settings()
    uvicorn.run(
        create_app(settings), host=settings.api_host, port=settings.api_port, log_level="warning"
    )
