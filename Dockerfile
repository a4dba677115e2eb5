# syntax=docker/dockerfile:1
# Build stage: a wheel of the project and wheels of its dependencies; build tools stay here.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY reel_reconciler ./reel_reconciler
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Final stage: the installed wheels and nothing else, run as a non-root user.
FROM python:3.11-slim-bookworm
# Must match pyproject.toml's version (a test checks it).
ARG VERSION=0.1.0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 reel \
    && useradd --system --uid 10001 --gid reel --no-create-home --shell /usr/sbin/nologin reel
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels "reel-reconciler==${VERSION}" \
    && rm -rf /wheels
USER 10001:10001
EXPOSE 9102 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"]
ENTRYPOINT ["reel-reconciler", "operator"]
CMD ["--all-namespaces"]
