"""`ftorch cache ls`: ftorch's caches ($FTORCH_CACHE) with their entry counts and sizes; `ftorch cache clear [NAME]`:
empty one of them, or all."""

from __future__ import annotations


def add_parser(sub) -> None:
    cache = sub.add_parser("cache", help="list or clear ftorch's caches (answers, judge, models, tokenized data)")
    actions = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    actions.add_parser("ls", help="each cache with its entry count and size")
    clear = actions.add_parser("clear", help="empty one cache (NAME, as `ftorch cache ls` lists it), or all")
    clear.add_argument("name", nargs="?", help="default: every cache")


def run(args) -> int:
    from .. import cache_inventory as caches
    from .console import out

    if args.cache_command == "ls":
        from rich.table import Table

        found = caches.inventory()
        table = Table(title=f"ftorch caches in {found[0].path}", title_justify="left")
        for column, justify in (("name", "left"), ("what", "left"), ("entries", "right"), ("size", "right")):
            table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
        for entry in found:
            table.add_row(entry.name, entry.what, f"{entry.entries:,}", caches.human(entry.bytes))
        out.print(table)
        total = sum(e.bytes for e in found)
        out.print(f"total {caches.human(total)}; clear one with: ftorch cache clear NAME", markup=False)
        return 0
    kinds = [caches.kind(args.name)] if args.name else list(caches.KINDS)
    for kind in kinds:
        was = caches.clear(kind)
        out.print(f"cleared {kind.name}: {was.entries:,} entries, {caches.human(was.bytes)}", markup=False)
    return 0
