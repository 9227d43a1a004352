#!/bin/sh
# Screenshots of the rendered emails, for the README. A developer's tool, not CI's:
#   apt-get install chromium fonts-noto-core   (Debian)
#   python -m notifications.preview docs/emails && sh docs/emails/screenshots.sh
set -eu
cd "$(dirname "$0")"
for page in *.html; do
    chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
        --no-first-run --hide-scrollbars --window-size=720,1000 \
        --screenshot="${page%.html}.png" "file://$PWD/$page" 2>/dev/null
done
ls -1 ./*.png
