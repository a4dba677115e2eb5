# syntax=docker/dockerfile:1
# Build stage: the locked dependencies downloaded as wheels (every file checked against the
# lock's hashes) and a wheel of the project; build tools stay here.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY requirements/runtime.txt ./requirements/runtime.txt
RUN pip download --no-cache-dir --require-hashes --only-binary=:all: --dest /wheels \
    -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY reel_reconciler ./reel_reconciler
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Final stage: the installed wheels and nothing else, run as a non-root user. The lock decides
# every dependency's version (hashes checked again); the project comes without dependencies.
FROM python:3.11-slim-bookworm
# Must match pyproject.toml's version (a test checks it).
ARG VERSION=0.1.0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 reel \
    && useradd --system --uid 10001 --gid reel --no-create-home --shell /usr/sbin/nologin reel
COPY requirements/runtime.txt /tmp/runtime.txt
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels --require-hashes -r /tmp/runtime.txt \
    && pip install --no-index --find-links=/wheels --no-deps "reel-reconciler==${VERSION}" \
    && rm -rf /wheels /tmp/runtime.txt
USER 10001:10001
EXPOSE 9102 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"]
ENTRYPOINT ["reel-reconciler", "operator"]
CMD ["--all-namespaces"]
