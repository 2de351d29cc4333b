# The service image: `docker compose up --build`, or alone with its embedded PostgreSQL:
#   docker build -t activity-service . && docker run -p 5000:5000 activity-service

# Build the wheel in a throwaway stage, so neither the source tree nor the build tools ship.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
# GraphiQL's pinned browser files are baked in at build time (Python alone fetches them from the
# npm registry and checks their hashes), so the image serves GraphiQL with no internet.
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && python -m graphql_schema.graphiql_assets fetch \
    && python -m graphql_schema.graphiql_assets verify \
    && useradd --create-home --uid 10001 activity

USER activity
WORKDIR /home/activity
# Only used when no database is configured: the embedded PostgreSQL keeps its data here.
ENV ACTIVITY_DATA_DIR=/home/activity/data
EXPOSE 5000
# Exec form: the server is PID 1 and receives SIGTERM itself (graceful shutdown).
CMD ["activity-service", "serve", "--host", "0.0.0.0", "--port", "5000"]
