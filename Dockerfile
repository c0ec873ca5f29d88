# celery-otel-bridge container image: docker build -t celery-otel-bridge .
# Configure it with the environment variables of `--help` (CELERY_BROKER_URL,
# OTEL_EXPORTER_OTLP_ENDPOINT, ...); it stops gracefully on SIGTERM (exit code 0).

# Base: Node.js 26 (LTS "Lithium", Active LTS since 2026-10-28; Node 20 reached end of life on
# 2026-04-30, https://github.com/nodejs/Release#release-schedule), pinned by the digest of its
# multi-arch image index so every build gets the same bytes. The digest is the one Docker Hub
# published for node:26.5.0-bookworm-slim, as recorded by docker-library/repo-info
# (repos/node/remote/26.5.0-bookworm-slim.md). To move it: `docker buildx imagetools inspect
# node:26-bookworm-slim` and replace both FROM lines. The code itself still runs on Node >= 20.12
# (package.json engines).
# --- build: TypeScript -> dist/ with the dev dependencies -----------------------------------------
FROM node:26.5.0-bookworm-slim@sha256:e999d087492c7227c85adc70574cf9d3cce774c3e6d7b8dfe473ee6b142c8f2c AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are copied; the build runs below.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- run: production dependencies and dist/ only, as the unprivileged `node` user ---------------
FROM node:26.5.0-bookworm-slim@sha256:e999d087492c7227c85adc70574cf9d3cce774c3e6d7b8dfe473ee6b142c8f2c
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
USER node
ENTRYPOINT ["node", "dist/main.js"]
