#!/usr/bin/env python
"""Build a proxy dataset (configs/proxies/<name>/) in the VOC layout from a fetched git snapshot.

    python tools/make_proxy.py --proxy NAME --git GIT_DIR --out DIR [--overwrite] [--rebuild]
    python tools/make_proxy.py --all --mirrors MIRRORS --out PARENT [--overwrite] [--rebuild]
    python tools/make_proxy.py --proxy NAME --git GIT_DIR --write-splits

Files are read at the commit source.yaml records, straight from the git
directory (``fetch github:owner/name`` puts it at
``/work/.mirror/owner+name/repo``); nothing is downloaded. The project's
readers (VOC, COCO, YOLO txt) read the annotations from a temporary copy
beside DIR (``.DIR.src-PID``, removed afterwards). The output is
``JPEGImages/``, ``Annotations/*.xml`` (absolute pixel boxes),
``ImageSets/Main/{train,val,test}.txt`` (the proxy's split files) and
``proxy.json``. ``--all`` builds every proxy under ``--proxies-dir`` into
``PARENT/<name>``, finding each git directory under ``MIRRORS`` by its
repository (``owner+name/repo`` or ``owner+name``).

DIR must be new, empty, or a proxy this tool built (replaced once the new
build is complete, or kept when built from the same source.yaml and split
files; ``--rebuild`` builds it again); ``--overwrite`` replaces any other
folder. DIR is never inside the git directory or the proxy folder.

``--write-splits`` writes the proxy's split files from source.yaml's
``split`` rule (the dataset's own splits, or a seeded shuffle); existing
split files are never replaced.

Bad input (a commit the git directory lacks, a missing file, a malformed
annotation, a split file that does not match the source) prints one line
naming the file and exits with 2.
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detect.cli import EXIT_BAD_INPUT, EXIT_OK, os_error_line  # noqa: E402
from detect.data.git_snapshot import mirror_git_dir  # noqa: E402
from detect.data.proxies import build_proxy, propose_splits, proxy_items  # noqa: E402
from detect.data.proxy_source import load_source, proxy_folders, write_split_files  # noqa: E402
from detect.errors import InputError  # noqa: E402

TOOL = "tools/make_proxy.py"
PROXIES_DIR = ROOT / "configs" / "proxies"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--proxy", metavar="NAME", help="a proxy name under --proxies-dir, or a proxy folder")
    which.add_argument("--all", action="store_true", help="every proxy under --proxies-dir")
    parser.add_argument("--git", metavar="GIT_DIR", help="the source repository's git directory (with --proxy)")
    parser.add_argument("--mirrors", metavar="DIR", help="folder of fetched snapshots, owner+name/repo (with --all)")
    parser.add_argument("--out", metavar="DIR", help="dataset folder (--proxy) or parent folder (--all)")
    parser.add_argument("--proxies-dir", metavar="DIR", default=str(PROXIES_DIR),
                        help="where the proxy folders are (default configs/proxies)")
    parser.add_argument("--overwrite", action="store_true", help="replace a folder this tool did not build")
    parser.add_argument("--rebuild", action="store_true", help="build again even if --out is up to date")
    parser.add_argument("--write-splits", action="store_true",
                        help="write the proxy's split files from source.yaml's split rule, then stop")
    args = parser.parse_args(argv)
    if args.proxy and not (args.git or args.mirrors):
        parser.error("--proxy needs --git (or --mirrors)")
    if args.all and not args.mirrors:
        parser.error("--all needs --mirrors")
    if args.write_splits and args.all:
        parser.error("--write-splits works on one --proxy")
    if not args.write_splits and not args.out:
        parser.error("--out is required")
    return args


def proxy_folder(name, proxies_dir):
    path = Path(name)
    if (path / "source.yaml").is_file():
        return path
    candidate = Path(proxies_dir) / name
    if (candidate / "source.yaml").is_file():
        return candidate
    known = ", ".join(p.name for p in proxy_folders(proxies_dir)) or "none"
    raise InputError(candidate, f"no such proxy (no source.yaml); proxies in {proxies_dir}: {known}")


def git_dir_for(args, folder):
    if args.git:
        return Path(args.git)
    return mirror_git_dir(args.mirrors, load_source(folder).repository)


def write_splits(folder, git_dir):
    source = load_source(folder)
    items, duplicates = proxy_items(source, git_dir, beside=source.folder)
    splits = propose_splits(source, items)
    write_split_files(source, splits)
    sizes = ", ".join(f"{split} {len(stems)}" for split, stems in splits.items())
    print(f"{source.folder}: split files written ({sizes}; {duplicates} duplicate(s) left out)")


def build(folder, git_dir, out, args):
    start = time.perf_counter()
    manifest = build_proxy(folder, git_dir, out, TOOL, overwrite=args.overwrite, rebuild=args.rebuild,
                           log=print)
    sizes = ", ".join(f"{split} {n}" for split, n in manifest["splits"].items())
    if manifest.get("skipped"):
        print(f"{out}: {manifest['name']} is up to date ({manifest['images']} images; --rebuild builds it again)")
        return
    extra = ""
    if manifest["duplicate_images_dropped"] or manifest["boxes_dropped_no_area"]:
        extra = (f"; left out: {manifest['duplicate_images_dropped']} duplicate image(s), "
                 f"{manifest['boxes_dropped_no_area']} box(es) with no area inside the image")
    print(f"{out}: {manifest['name']} from {manifest['repository']}@{manifest['commit'][:12]}: "
          f"{manifest['images']} images, {manifest['boxes']} boxes, {len(manifest['classes'])} classes "
          f"({sizes}){extra} in {time.perf_counter() - start:.1f} s")


def main(argv=None):
    args = parse_args(argv)
    target = args.out or ""
    try:
        if args.all:
            folders = proxy_folders(args.proxies_dir)
            if not folders:
                raise InputError(args.proxies_dir, "no proxy folders (each holds a source.yaml)")
            for folder in folders:
                target = Path(args.out) / folder.name
                build(folder, git_dir_for(args, folder), target, args)
            return EXIT_OK
        folder = proxy_folder(args.proxy, args.proxies_dir)
        if args.write_splits:
            target = folder
            write_splits(folder, git_dir_for(args, folder))
        else:
            build(folder, git_dir_for(args, folder), Path(args.out), args)
    except InputError as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        print(os_error_line(error, target, "cannot write"), file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
