#!/usr/bin/env bash
# PNG encoding cost against size, to choose ConversionLimits::png_compression: encodes a 12 MP
# photo-like picture and a 3000x2000 banner-like picture (flat colours, text-like edges) with
# libvips' PNG writer (the one our helper uses) at zlib levels 0-9, row filter none and
# adaptive. Prints a Markdown table of median seconds of RUNS and output MB.
#
# usage: bench/image/png_levels.sh [RUNS=3]
set -euo pipefail
runs=${1:-3}
work=$(mktemp -d /tmp/iea-png-levels.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Tagged sRGB at the end: fractsurf tags its output b-w, and a b-w picture is written as a
# 1-band grey PNG (runs before 2026-12-04 22:45 UTC measured that grey picture).
for band in r g b; do
    vips fractsurf "$work/$band.v" 4000 3000 2.4
    vips gaussnoise "$work/noise-$band.v" 4000 3000 --sigma 4 --mean 0
done
vips bandjoin "$work/r.v $work/g.v $work/b.v" "$work/rgb.v"
vips bandjoin "$work/noise-r.v $work/noise-g.v $work/noise-b.v" "$work/noise3.v"
vips linear "$work/rgb.v" "$work/scaled.v" 1.2 128
vips add "$work/scaled.v" "$work/noise3.v" "$work/sum.v"
vips cast "$work/sum.v" "$work/photo-b-w.v" uchar
vips copy "$work/photo-b-w.v" "$work/photo.v" --interpretation srgb
# No fonts are needed: a fine pattern block stands in for text edges.
convert -size 3000x2000 gradient:'#1e90ff-#ffffff' -fill '#ff7a00' -draw 'rectangle 200,1200 1400,1700' \
        \( -size 1800x300 pattern:hs_diagcross \) -geometry +300+400 -composite "$work/banner.png"
vips copy "$work/banner.png" "$work/banner.v"

time_of() {
    local times=()
    for _ in $(seq "$runs"); do
        local start end
        start=$(date +%s.%N)
        vips copy "$1" "$2"
        end=$(date +%s.%N)
        times+=("$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

echo "| level | filter | photo s | photo MB | banner s | banner MB |"
echo "| --- | --- | --- | --- | --- | --- |"
for level in 0 1 2 3 4 6 9; do
    for filter in none all; do
        p=$(time_of "$work/photo.v" "$work/p.png[compression=$level,filter=$filter]")
        b=$(time_of "$work/banner.v" "$work/b.png[compression=$level,filter=$filter]")
        printf '| %s | %s | %s | %.1f | %s | %.2f |\n' "$level" "$filter" \
            "$p" "$(awk -v s="$(stat -c %s "$work/p.png")" 'BEGIN { print s / 1048576 }')" \
            "$b" "$(awk -v s="$(stat -c %s "$work/b.png")" 'BEGIN { print s / 1048576 }')"
    done
done
