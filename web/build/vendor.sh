#!/usr/bin/env bash
# Rebuilds the vendored third-party code of dogear's web pages from the versions pinned in
# package-lock.json: an ECharts bundle of the charts the pages use, and axe-core for the
# accessibility test. Run it after changing package.json; commit what it writes.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --silent
npx esbuild echarts-entry.js --bundle --minify --format=iife --target=es2019 \
  --legal-comments=none --outfile=../assets/vendor/echarts.min.js
cp node_modules/echarts/LICENSE ../assets/vendor/LICENSE-echarts.txt
cp node_modules/axe-core/axe.min.js ../testdata/axe.min.js
cp node_modules/axe-core/LICENSE ../testdata/LICENSE-axe-core.txt
rm -rf node_modules
ls -l ../assets/vendor ../testdata
