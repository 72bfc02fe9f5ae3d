"""``han-bench``: FLOPs against the paper's budgets (latency benchmarking lands with the bench issue)."""

from __future__ import annotations

import argparse
import json
import sys

from .flops import ROWS, flops_report, flops_table


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="han-bench", description="FLOPs/params of HAN against the paper's budgets.")
    p.add_argument(
        "--flops",
        action="store_true",
        help="count MACs/FLOPs/params of every variant and block type "
        "(FLOPs = 2 x conv+linear multiply-adds, the paper's convention); exit 1 if any is outside +-2%% of its budget",
    )
    p.add_argument(
        "--json", action="store_true", help="with --flops: print one JSON object keyed by row name instead of the table"
    )
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated FLOPs rows (default: all of {', '.join(ROWS)})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.flops:
        build_parser().error("nothing to do: pass --flops")
    names = [n.strip() for n in args.rows.split(",") if n.strip()]
    bad = [n for n in names if n not in ROWS]
    if bad:
        build_parser().error(f"unknown row(s) {', '.join(bad)}; choose from {', '.join(ROWS)}")
    reports = [flops_report(n) for n in names]
    if args.json:
        keep = ("macs", "flops", "params", "budget", "deviation", "within_budget")
        print(json.dumps({r.name: {k: r.to_dict()[k] for k in keep} for r in reports}, indent=2))
    else:
        print(flops_table(reports))
        print(
            "MACs: conv+linear multiply-adds (fvcore); FLOPs = 2 x MACs (paper's convention, DESIGN.md §2);"
            " torch FLOPs: torch.utils.flop_counter cross-check; input 1x3x160x64"
        )
    return 0 if all(r.within_budget for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
