# The berth driver image: Node 20 slim with the tools the node service runs.
# Every step that needs the network comes first (the runtime tools, the
# compiler, npm ci); after npm ci the build needs none.
FROM node:20-bookworm-slim AS runtime
# The tools the node service runs: losetup and mount (mount), blkid and
# fsfreeze (util-linux), mkfs, e2fsck, resize2fs and filefrag (e2fsprogs),
# mkfs.xfs and xfs_growfs (xfsprogs), mkfs.btrfs (btrfs-progs), mount.nfs
# (nfs-common), cp --reflink (coreutils). netbase holds /etc/protocols and
# /etc/rpc, without which mount.nfs fails ("Protocol not supported") for
# NFSv3; a slim image lacks them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      nfs-common netbase util-linux mount e2fsprogs xfsprogs btrfs-progs \
 && rm -rf /var/lib/apt/lists/*

FROM node:20-bookworm-slim AS build
# node-gyp builds the berth_sys addon (native/) in `npm ci`, against the
# headers the image's Node carries.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
ENV npm_config_nodedir=/usr/local
WORKDIR /app
COPY package.json package-lock.json ./
COPY native ./native
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY proto ./proto
COPY driver ./driver
COPY controller ./controller
COPY node ./node
COPY volume ./volume
COPY host ./host
COPY cli ./cli
COPY nfs-client ./nfs-client
COPY flex ./flex
COPY scripts ./scripts
# The shipped code only (tsconfig.build.json leaves out test/ and bench/);
# build-flex.mjs also makes dist/berth-flex, which the chart's FlexVolume
# installer runs.
RUN npm run gen && npx tsc -p tsconfig.build.json && node scripts/build-flex.mjs && npm prune --omit=dev

FROM runtime
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/proto ./proto
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY --from=build /app/native/build/Release/berth_sys.node ./native/build/Release/berth_sys.node
ENTRYPOINT ["node", "/app/bin/berth.cjs"]
