"""App assembly: settings, lifespan, the FastAPI factory and the command line."""
