"""`datanet store add|get`: content in and out of the configured store, verified by CID."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from node.cli.common import JsonOpt, console, print_json, progress_bar, settings
from node.storage import open_store

store_app = typer.Typer(no_args_is_help=True, help="Add and fetch content (embedded store, or an IPFS node).")

ApiOpt = Annotated[str | None, typer.Option("--ipfs-api", help="Kubo RPC API URL (default: the embedded store).")]


@store_app.command("add")
def store_add(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files or directories to add.")],
    ipfs_api: ApiOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add files (or directories, recursively) and print each CID."""
    store = open_store(settings(ctx), ipfs_api)
    added = []
    for path in paths:
        if not path.exists():
            raise typer.BadParameter(f"{path} does not exist", param_hint="PATHS")
    total = sum(_size(p) for p in paths)
    with progress_bar(f"adding {len(paths)} path(s)", total) as update:
        for path in paths:
            added.append({"path": str(path), "cid": store.add_path(path)})
            update(sum(_size(p) for p in paths[: len(added)]), None)
    if json_out:
        print_json(added)
    else:
        for item in added:
            console.print(f"{item['cid']}  {item['path']}")


@store_app.command("get")
def store_get(
    ctx: typer.Context,
    cid: Annotated[str, typer.Argument(help="The content's CID: bafy.../bafk... (CIDv1) or Qm... (CIDv0).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the file or directory.")],
    ipfs_api: ApiOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Fetch content by CID, verify every block, and write it to PATH.

    --json prints {"cid", "path", "type" ("file" or "directory"), "files", "bytes"}."""
    with progress_bar(f"fetching and verifying {cid}"):
        written = open_store(settings(ctx), ipfs_api).get(cid, output)
    files = [p for p in written.rglob("*") if p.is_file()] if written.is_dir() else [written]
    got = {
        "cid": cid,
        "path": str(written),
        "type": "directory" if written.is_dir() else "file",
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
    }
    if json_out:
        print_json(got)
    else:
        console.print(f"wrote {cid} to {output} (verified; {got['files']} file(s), {got['bytes']:,} bytes)")


def _size(path: Path) -> int:
    """Bytes under `path` (a file, or every file of a directory)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
