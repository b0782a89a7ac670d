#!/bin/bash
# The repeat, five minutes later: the same measurements into this directory.
exec "$(dirname "$0")/../measure.sh" results/anatomy/prices/repeat
