#!/bin/sh
# prebuildify calls node-gyp with its own arguments; we build with cmake-js instead,
# which writes build/Release/lowcomms.node where prebuildify looks for it.
exec "$(dirname "$0")/../node_modules/.bin/cmake-js" rebuild
