"""Write ``resources/model_names.json``: the model names torchvision and timm know.

The command line checks a model name against this file without importing torch (see
``transfer_gui/model_names.py``). Each section records the version of the library it was read
from and is used only while that version is installed; with another version the app reads the
names from the library once (slow) and caches them per version.

Run it after upgrading torchvision or timm, in the environment the app ships with:

    python tools/make_model_names.py            # rewrite the file
    python tools/make_model_names.py --check    # exit 1 when the file is stale (CI)

``tests/test_cli_fast.py`` fails while the file does not match the installed libraries.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transfer_gui import model_names  # noqa: E402

TARGET = ROOT / "resources" / "model_names.json"


def render(data: dict) -> str:
    # one name per line keeps a diff after an upgrade readable
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the file differs")
    parser.add_argument("--out", type=Path, default=TARGET, help=f"the file to write (default: {TARGET})")
    args = parser.parse_args(argv)
    text = render(model_names.collect_all())
    tv, tm = json.loads(text)["torchvision"], json.loads(text)["timm"]
    summary = (f"torchvision {tv['version']}: {len(tv['names'])} models; timm {tm['version']}: "
               f"{len(tm['archs'])} architectures, {sum(map(len, tm['tags'].values()))} pretrained tags")
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is stale; run python tools/make_model_names.py ({summary})", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date ({summary})")
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
