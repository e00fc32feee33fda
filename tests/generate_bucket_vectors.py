"""Regenerate tests/bucket_vectors.json (run from the repository root).

The vectors pin the bucketing contract of docs/bucketing.md; the file is
meant for other implementations (TypeScript, Go...) to check themselves
against. Only ever *add* vectors: changing an existing one breaks routing.
"""

from __future__ import annotations

import json
from pathlib import Path

import mmh3

KEYS: list[str | int] = [
    "user-42",
    "user-1",
    "tenant:acme",
    "a",
    "0",
    "42",
    42,
    0,
    7,
    123456789,
    2**53 + 1,
    10**30,
    "ünïcödé",
    "日本語のユーザー",
    "Ελληνικά",
    "emoji-🚀",
    "👩‍👩‍👧‍👦",
    "with space",
    "comma,key",
    "quote'\"key",
    "tab\tkey",
    "newline\nkey",
    "x" * 1000,
    "550e8400-e29b-41d4-a716-446655440000",
    "USER-42",
    " user-42",
]
SALTS = ["dbroute", "checkout-2026", "ünï-salt"]


def vector(key: str | int, salt: str) -> dict[str, object]:
    h = mmh3.hash(f"{salt}:{key}".encode(), 0, False)
    return {
        "key": key,
        # Exactly what is hashed after the salt: JSON readers that turn large
        # integers into floats (JavaScript) should use this.
        "key_text": str(key),
        "salt": salt,
        "hash": h,
        "bucket": (h % 100) * 100 + (h // 100) % 100,
        "unleash_normalized": h % 100 + 1,
    }


def main() -> None:
    document = {
        "contract": (
            "h = murmur3_x86_32(utf8(salt + ':' + str(key)), seed=0) as unsigned; "
            "bucket = (h % 100) * 100 + (h // 100) % 100; RDS iff bucket < round(percent * 100). "
            "Integer keys hash as their decimal string."
        ),
        "vectors": [vector(key, salt) for salt in SALTS for key in KEYS],
    }
    path = Path(__file__).with_name("bucket_vectors.json")
    path.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
