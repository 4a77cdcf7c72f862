# syntax=docker/dockerfile:1
# livekit-ffi-broker as a sidecar: the one process that holds liblivekit_ffi, serving the worker
# containers beside it on a Unix socket in a shared volume (see docker-compose.example.yml).
#
#   docker build -t livekit-ffi-broker .
#   docker run -d -v broker-socket:/run/livekit-ffi-broker livekit-ffi-broker [more serve flags]
#
# linux/amd64 only: liblivekit_ffi is the binary of the npm package
# @livekit/rtc-ffi-bindings-linux-x64-gnu (x64, glibc), a direct dependency that npm refuses to
# install on another CPU. Both stages pin the platform, so an arm64 host builds and runs the image
# under emulation.
#
# Every RUN step is a command the README documents. test/container.test.ts checks that, rebuilds the
# runtime stage's file layout from an `npm install` tree and runs ENTRYPOINT and HEALTHCHECK there.

FROM --platform=linux/amd64 node:20-bookworm AS build
WORKDIR /app
# The source tree; .dockerignore keeps host build output (node_modules, dist, build, proto/gen) out.
COPY . .
# Dependencies (the lock file pins them; `npm ci` would refuse a lock made where the registry lacks
# the optional non-x64 platform packages), then `prepare` = `npm run build`: proto code (buf), the C callback queue
# (cc: this image's gcc) and TypeScript to dist/.
RUN npm install
# Drop buf, protoc-gen-es, TypeScript and @types: the runtime needs none of them.
RUN npm prune --omit=dev

# The audio filter plugin packages workers may load (serve --allow-audio-plugins DIR): the broker's
# own copy of each release, DIR/<distribution>/<version>/, as scripts/install-audio-plugins.sh lays
# it out. A worker's plugin and model paths are mapped onto these, never opened. Choose them with
#   docker build --build-arg AUDIO_PLUGINS="NAME==VERSION ..." .     ("" for none)
# The default is the noise cancellation the agent templates import; give the release your workers
# have installed (`pip show livekit-plugins-noise-cancellation`).
FROM --platform=linux/amd64 python:3.11-slim-bookworm AS audio-plugins
ARG AUDIO_PLUGINS="livekit-plugins-noise-cancellation==0.3.2"
COPY scripts/install-audio-plugins.sh /usr/local/bin/
RUN bash /usr/local/bin/install-audio-plugins.sh /audio-plugins $AUDIO_PLUGINS

FROM --platform=linux/amd64 node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Only what the broker reads at runtime, owned by root (the node user cannot change it):
# package.json (the package root and version), the production node_modules (with liblivekit_ffi and
# koffi), the compiled broker, client and proto code, the callback queue shim, and the contract
# (gRPC reflection) and the pointer and package file tables read from proto/.
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/broker ./dist/broker
COPY --from=build /app/dist/client ./dist/client
COPY --from=build /app/dist/proto ./dist/proto
COPY --from=build /app/build/native/liblkq_callback_queue.so /app/build/native/liblkb_media_lane.so ./build/native/
COPY --from=build /app/proto/ffi_broker.proto /app/proto/pointer_fields.json /app/proto/package_file_fields.json ./proto/
# The plugin packages, owned by root like the rest: workers can load them, nobody can change them.
COPY --from=audio-plugins /audio-plugins ./audio-plugins
# The socket directory, owned by the node user (uid 1000, gid 1000). A new named volume mounted here
# takes this owner; the socket in it gets mode 0660 (--socket-mode), so a worker connects when it
# runs as uid 1000 or has gid 1000 among its groups.
RUN install -d -o node -g node /run/livekit-ffi-broker
VOLUME /run/livekit-ffi-broker
USER node
# The broker handles SIGTERM itself (ends sessions, disposes of the library, removes the socket).
# Give the container's command (CMD) to add serve flags, e.g. --log-level debug or --socket-mode 666.
ENTRYPOINT ["node", "/app/dist/broker/cli.js", "serve", "--listen", "unix:///run/livekit-ffi-broker/broker.sock", "--allow-audio-plugins", "/app/audio-plugins"]
CMD []
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "/app/dist/broker/cli.js", "info", "--address", "unix:///run/livekit-ffi-broker/broker.sock"]
