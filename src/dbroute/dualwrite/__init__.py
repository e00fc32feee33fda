"""Dual-write: every write committed on one database is mirrored to the other.

Change capture in the database (:mod:`~dbroute.dualwrite.capture`), the
commit protocol (:mod:`~dbroute.dualwrite.mirror`), the durable journal
(:mod:`~dbroute.dualwrite.journal`), replay (:mod:`~dbroute.dualwrite.replay`),
setup/teardown (:mod:`~dbroute.dualwrite.setup`) and the journal table the
CLI and the demo print (:mod:`~dbroute.dualwrite.render`). See ``docs/dual-write.md``.
The router loads this package only when dual-write may be on.
"""
