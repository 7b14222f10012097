"""A tenant's fine-tune, guarded end to end: Hugging Face ``datasets`` and PyTorch.

1. the tenant's records (sealed at ingestion) and one record of another tenant that
   slipped into the export become a ``datasets.Dataset`` (``sealed_dataset``: the
   canonical content travels beside each seal, so Arrow's conversions do not break it);
2. ``guard_dataset`` at ``tenant-fine-tune:TENANT`` in ``filter`` mode keeps the
   tenant's own records (under its active agreement) and drops the other tenant's;
3. ``guarded_map`` tokenizes them: each output is sealed again as the tenant's content,
   so it still verifies (a plain ``map`` would leave outputs whose seals do not match);
4. ``guarded_loader`` feeds a small PyTorch model with ``num_workers`` DataLoader
   workers, each checking the records it loads in ``enforce`` mode;
5. the same tokenized set is refused at ``shared-training``: it is customer content.

    KAIRO_GUARD_HOME=... KAIRO_GUARD_KEY=... python examples/finetune_hf_torch.py --tenant acme

The tenant needs an active fine-tune agreement (``kairo-guard agreements grant acme``).
Exit 0 when the model trained on the tenant's records only and the shared sink refused
them, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import torch
from torch import nn

from kairo_guard import Guard, IsolationViolation
from kairo_guard.integrations.datasets import guard_dataset, guarded_map, sealed_dataset
from kairo_guard.integrations.torch import guarded_loader

VOCAB = 512
TICKETS = [
    ("the invoice export fails when the date range spans two months", 1),
    ("please reset the password of the analytics account", 0),
    ("billing shows a duplicate charge for the march invoice", 1),
    ("the dashboard loads slowly after the upgrade", 0),
    ("refund the second charge on invoice 1042", 1),
    ("add two seats to the team plan", 0),
]


def tokenize(row: dict[str, Any]) -> dict[str, Any]:
    """A whitespace tokenizer hashed into a small vocabulary (stands in for a real one)."""
    ids = [sum(map(ord, word)) % VOCAB for word in str(row["text"]).split()]
    return {"input_ids": ids, "label": row["label"]}


def collate(rows: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids = [torch.tensor(r["input_ids"], dtype=torch.long) for r in rows]
    offsets = torch.tensor([0, *torch.cumsum(torch.tensor([len(i) for i in ids]), 0)[:-1]])
    return torch.cat(ids), offsets, torch.tensor([r["label"] for r in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    sink = f"tenant-fine-tune:{args.tenant}"
    with Guard(home=os.environ["KAIRO_GUARD_HOME"]) as guard:
        # what ingestion sealed: the tenant's tickets, and one of another tenant's
        records = [
            guard.label_record({"text": text, "label": label}, tenant=args.tenant, source="tickets")
            for text, label in TICKETS
        ]
        records.append(
            guard.label_record({"text": "globex pricing memo", "label": 0}, tenant="globex")
        )
        ds = sealed_dataset(records)

        reports: list[Any] = []
        own = guard_dataset(ds, guard, sink, mode="filter", on_report=reports.append)
        print(f"{sink}: kept {len(own)} of {len(ds)} records; by rule {dict(reports[0].by_rule)}")
        if len(own) != len(TICKETS):
            print(
                "the tenant's records did not all pass: is its agreement active?", file=sys.stderr
            )
            return 1

        tokens = guarded_map(own, tokenize, guard, remove_columns=["text"])
        embed, head = nn.EmbeddingBag(VOCAB, 16), nn.Linear(16, 2)
        optimizer = torch.optim.SGD([*embed.parameters(), *head.parameters()], lr=0.5)
        loader = guarded_loader(
            tokens, guard, sink, mode="enforce", batch_size=3, shuffle=True,
            num_workers=args.workers, collate_fn=collate,
        )  # fmt: skip
        for epoch in range(args.epochs):
            total = 0.0
            for ids, offsets, labels in loader:
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(head(embed(ids, offsets)), labels)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                total += float(loss)
            print(f"epoch {epoch + 1}: loss {total:.3f}")

        try:
            guard_dataset(tokens, guard, "shared-training", mode="enforce")
        except IsolationViolation as exc:
            print(f"shared-training: refused, as it must be: {dict(exc.report.by_rule)}")
            return 0
        print("shared-training accepted the tenant's content", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
