"""PIL peer for benches/render_vs_pil.rs: the same documents, font, size, page and wrap rule.

Greedy word wrap by pixel width (word advances from FreeType via ImageFont.getlength, paragraphs
split on newlines, words on spaces), fixed-size grayscale pages, one ImageDraw.text call per
line. Prints one JSON object with page counts and process CPU seconds.
"""
import argparse
import io
import json
import time

from PIL import Image, ImageDraw, ImageFont, __version__ as PIL_VERSION


def wrap(paragraph, font, width, cache):
    lines, line, line_w = [], [], 0.0
    space = cache.setdefault(" ", font.getlength(" "))
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", required=True)
    ap.add_argument("--font", required=True)
    ap.add_argument("--size", type=int, default=18)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--margin", type=int, default=32)
    ap.add_argument("--pitch", type=int, required=True)
    args = ap.parse_args()
    with open(args.docs, encoding="utf-8") as f:
        docs = [json.loads(line)["text"] for line in f if line.strip()]
    font = ImageFont.truetype(args.font, args.size)

    t0 = time.process_time()
    cache = {}
    pages = sum(len(render(d, font, args, cache)) for d in docs)
    memory_s = time.process_time() - t0

    t0 = time.process_time()
    png_pages, png_bytes = 0, 0
    for d in docs:
        for page in render(d, font, args, cache):
            buf = io.BytesIO()
            page.save(buf, format="PNG")
            png_pages += 1
            png_bytes += buf.tell()
    png_s = time.process_time() - t0
    print(
        json.dumps(
            {
                "pil_version": PIL_VERSION,
                "pages": pages,
                "cpu_s_memory": memory_s,
                "png_pages": png_pages,
                "cpu_s_png": png_s,
                "png_bytes": png_bytes,
            }
        )
    )


if __name__ == "__main__":
    main()
