"""PIL peer for benches/render_vs_pil.rs: the same documents, font, size, page and wrap rule.

Greedy word wrap by pixel width (word advances from FreeType via ImageFont.getlength, paragraphs
split on newlines, words on spaces), fixed-size grayscale pages, one ImageDraw.text call per
line. The word-width dict is this peer's layout cache (DeepSynth's is its `RenderCache`).

Timing, the same as the Rust side: WARMUP untimed passes, then the best of ROUNDS timed passes
(process CPU time) over all documents, for each measurement:
  memory      render only;
  png         render + PNG encode with PIL's default save (compress_level 6, zlib strategy
              Z_FILTERED, adaptive row filters);
  png_level1  render + PNG encode at compress_level 1 (the peer of our labelled fast level);
memory and png each cold (every timed pass starts with an empty word-width dict) and warm (the
dict kept from the passes before); png_level1 cold only. Prints one JSON object.
"""
import argparse
import io
import json
import time

from PIL import Image, ImageDraw, ImageFont, __version__ as PIL_VERSION
from PIL import features


def wrap(paragraph, font, width, cache):
    lines, line, line_w = [], [], 0.0
    space = cache.get(" ")
    if space is None:
        space = cache[" "] = font.getlength(" ")
    for word in paragraph.split(" "):
        w = cache.get(word)
        if w is None:
            w = cache[word] = font.getlength(word)
        added = w if not line else line_w + space + w
        if line and added > width:
            lines.append(" ".join(line))
            line, line_w = [word], w
        else:
            line.append(word)
            line_w = added
    lines.append(" ".join(line))
    return lines


def render(text, font, args, cache):
    content = args.width - 2 * args.margin
    lines = []
    for paragraph in text.split("\n"):
        lines.extend(wrap(paragraph, font, content, cache))
    per_page = max(1, (args.height - 2 * args.margin) // args.pitch)
    pages = []
    for start in range(0, max(1, len(lines)), per_page):
        img = Image.new("L", (args.width, args.height), 255)
        draw = ImageDraw.Draw(img)
        for row, line in enumerate(lines[start : start + per_page]):
            draw.text((args.margin, args.margin + row * args.pitch), line, font=font, fill=0)
        pages.append(img)
    return pages


def one_pass(docs, font, args, cache, png_kwargs):
    pages, size = 0, 0
    for d in docs:
        for page in render(d, font, args, cache):
            pages += 1
            if png_kwargs is not None:
                buf = io.BytesIO()
                page.save(buf, format="PNG", **png_kwargs)
                size += buf.tell()
    return pages, size


def measure(docs, font, args, png_kwargs, warm):
    cache = {}
    for _ in range(args.warmup):
        one_pass(docs, font, args, cache if warm else {}, png_kwargs)
    best = float("inf")
    pages = size = 0
    for _ in range(args.rounds):
        if not warm:
            cache = {}
        t0 = time.process_time()
        pages, size = one_pass(docs, font, args, cache, png_kwargs)
        best = min(best, time.process_time() - t0)
    return {"pages": pages, "cpu_s": best, "png_bytes": size}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", required=True)
    ap.add_argument("--font", required=True)
    ap.add_argument("--size", type=int, default=18)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--margin", type=int, default=32)
    ap.add_argument("--pitch", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with open(args.docs, encoding="utf-8") as f:
        docs = [json.loads(line)["text"] for line in f if line.strip()]
    font = ImageFont.truetype(args.font, args.size)
    out = {
        "pil_version": PIL_VERSION,
        "zlib": features.version("zlib"),
        "freetype": features.version("freetype2"),
        "warmup": args.warmup,
        "rounds": args.rounds,
    }
    for name, kwargs, warms in [
        ("memory", None, (False, True)),
        ("png", {}, (False, True)),
        ("png_level1", {"compress_level": 1}, (False,)),
    ]:
        for warm in warms:
            out[f"{name}_{'warm' if warm else 'cold'}"] = measure(docs, font, args, kwargs, warm)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
