# celery-otel-bridge container image: docker build -t celery-otel-bridge .
# Configure it with the environment variables of `--help` (CELERY_BROKER_URL,
# OTEL_EXPORTER_OTLP_ENDPOINT, ...); it stops gracefully on SIGTERM (exit code 0).

# --- build: TypeScript -> dist/ with the dev dependencies -----------------------------------------
FROM node:20.18.1-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are copied; the build runs below.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- run: production dependencies and dist/ only, as the unprivileged `node` user ---------------
FROM node:20.18.1-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
USER node
ENTRYPOINT ["node", "dist/main.js"]
