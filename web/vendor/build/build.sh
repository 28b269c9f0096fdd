#!/usr/bin/env bash
# Rebuilds ../jssip-<version>.min.js from the npm package pinned in package-lock.json.
# Only needed to change JsSIP's version: the built file is committed, so running the edge
# needs no Node. Requires Node and npm; writes node_modules/ here (ignored by git).
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
version=$(node -p "require('./node_modules/jssip/package.json').version")
npx esbuild node_modules/jssip/lib/JsSIP.js --bundle --minify --format=iife \
    --global-name=JsSIP --platform=browser --target=es2020 --legal-comments=inline \
    --outfile="../jssip-$version.min.js"
echo "built web/vendor/jssip-$version.min.js; update web/vendor/LICENSE and the name in src/web/assets.rs and web/index.html"
