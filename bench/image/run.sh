#!/usr/bin/env bash
# Image intake benchmark: our `image-edit-agent convert` against ImageMagick's `convert` doing
# the same conversion (first page/scene, EXIF orientation, sRGB, 8 bits) at the same PNG
# compression, in the same run. Inputs are made here with libvips and ImageMagick, plus the
# shared corpus when it is next to the clone.
#
# usage: bench/image/run.sh [BUILD_DIR=build/release] [RUNS=3] [LEVEL=our default]
# Prints Markdown tables (time = median wall seconds of RUNS, RSS = peak resident MB of the
# process tree: `convert` runs its decode in place, in image-decode-worker, after one exec) and
# the median ours/IM time ratio over all rows. Run it on a quiet machine: it prints the load.
set -euo pipefail

build=${1:-build/release}
runs=${2:-3}
level=${3:-2}
agent="$build/image-edit-agent"
here=$(cd "$(dirname "$0")/../.." && pwd)
corpus="$here/../shared/corpus/images"
work=$(mktemp -d /tmp/iea-image-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

[ -x "$agent" ] && [ -x "$build/image-decode-worker" ] || {
    echo "build $agent first (cmake --build $build --target image-edit-agent image-decode-worker)" >&2
    exit 2
}

# ---- inputs ----
# A 12 MP colour "photo": a fractal surface (photo-like spectrum) plus sensor-like noise per
# band, tagged sRGB before saving. fractsurf tags its output b-w, and a b-w image is saved as a
# grey JPEG, which ImageMagick then writes as a 1-channel PNG: a third of our RGB output, so the
# output sizes did not compare (runs before 2026-12-04 22:45 UTC had that grey "photo").
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
vips copy "$work/photo.v" "$work/photo-12mp.jpg[Q=90]"
rm -f "$work"/*.v
# A 3000x2000 PSD with a composite and three layers.
convert "$work/photo-12mp.jpg" -resize 3000x2000! "$work/bg.png"
convert "$work/bg.png" -crop 1200x800+600+400 +repage "$work/cut.png"
convert -size 900x300 xc:none -fill '#ff7a00' -draw 'roundrectangle 0,0 899,299 40,40' "$work/shape.png"
convert "$work/bg.png" "$work/shape.png" -geometry +1800+1500 -composite \
        "$work/cut.png" -geometry +150+150 -composite "$work/composite.png"
convert "$work/composite.png" "$work/bg.png" \( "$work/cut.png" -repage +150+150 \) \
        \( "$work/shape.png" -repage +1800+1500 \) "$work/layered-3000x2000.psd"
# 16-bit PNG and CMYK JPEG.
convert "$work/bg.png" -depth 16 "$work/rgb16-3000x2000.png"
convert "$work/photo-12mp.jpg" -colorspace CMYK -quality 90 "$work/cmyk-12mp.jpg"
rm -f "$work"/bg.png "$work"/cut.png "$work"/shape.png "$work"/composite.png

measure() {  # prints "seconds peak_kb" of one run of "$@"
    # Wall time from bash's own clock (no extra process in the timed span; time's %e has only
    # 10 ms resolution), peak RSS from /usr/bin/time.
    local start end
    start=$EPOCHREALTIME
    /usr/bin/time -f "%M" -o "$work/time" "$@" > /dev/null 2>&1 || true
    end=$EPOCHREALTIME
    printf '%.3f %s\n' "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" "$(tail -1 "$work/time")"
}

median_of() {  # RUNS runs of "$@": median seconds, max RSS in MB
    local times=() rss=0 t m
    for _ in $(seq "$runs"); do
        read -r t m < <(measure "$@")
        times+=("$t")
        (( m > rss )) && rss=$m
    done
    printf '%s %d\n' "$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" $((rss / 1024))
}

size_kb() { [ -f "$1" ] && echo $(( $(stat -c %s "$1") / 1024 )) || echo "-"; }

compare() {  # one table row for input $1
    local input=$1 name
    name=$(basename "$input")
    rm -f "$work/ours.png" "$work/im.png"
    read -r ours_s ours_mb < <(median_of "$agent" convert "$input" "$work/ours.png" --png-compression "$level")
    read -r im_s im_mb < <(median_of convert "${input}[0]" -auto-orient -colorspace sRGB -depth 8 \
        -define png:compression-level="$level" -define png:compression-filter=5 \
        -define png:compression-strategy=0 -strip "$work/im.png")
    ratio=$(awk -v a="$ours_s" -v b="$im_s" 'BEGIN { print (b > 0 ? a / b : 0) }')
    echo "$ratio" >> "$work/ratios"
    printf '| %s | %s | %s | %s | %s | %s | %s | %.2f |\n' "$name" "$ours_s" "$ours_mb" \
        "$(size_kb "$work/ours.png")" "$im_s" "$im_mb" "$(size_kb "$work/im.png")" "$ratio"
}

echo "PNG compression level $level, adaptive row filter (both tools), $runs runs each, $(nproc) cores"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| input | ours s | ours MB | ours KB | IM s | IM MB | IM KB | ours/IM time |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for input in "$work/photo-12mp.jpg" "$work/layered-3000x2000.psd" "$work/rgb16-3000x2000.png" \
             "$work/cmyk-12mp.jpg"; do
    compare "$input"
done
if [ -d "$corpus" ]; then
    # Files both tools convert in a few seconds (the bombs, the hang and the refusals are
    # covered by the tests, not timed here).
    for name in jpeg-ordinary.jpg jpeg-exif-orient6.jpg jpeg-cmyk-noprofile.jpg png-palette-trns.png \
                png-16bit-rgba.png psd-rgb8-layered-ok.psd psd-cmyk-alpha-spot-letter.psd psb-ok.psb \
                tiff-cmyk-jpeg.tif webp-alpha.webp gif-animated.gif heic-ordinary.heic svg-ordinary.svg; do
        compare "$corpus/$name"
    done
fi

echo
echo "| validation copy (≤1568 px, ≤5 MB base64) | s | MB | output |"
echo "| --- | --- | --- | --- |"
read -r v_s v_mb < <(median_of "$agent" convert "$work/photo-12mp.jpg" "$work/vision.png" --for-validation)
out=$(ls "$work"/vision.* 2>/dev/null | head -1)
printf '| photo-12mp.jpg | %s | %s | %s, %s KB |\n' "$v_s" "$v_mb" "$(basename "$out")" "$(size_kb "$out")"

echo
echo "median ours/IM time over $(wc -l < "$work/ratios") rows: $(sort -g "$work/ratios" | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}')"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
