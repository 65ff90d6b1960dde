"""What an object read must say it is: the placement policy of the Store
(and of the shared tier, which checks what it hands out).  An object is the
instance its ``InstanceRef`` names, of the study and series the tree placed
it in, of the patient its study was listed under (issue 17).  A form of an
object that rewrites those identities (de-identification, which gives new
UIDs and a pseudonymous Patient ID) brings a policy of its own that maps the
expected values into its form; every other form keeps them as listed."""

from __future__ import annotations

from typing import Protocol

from ..model import InstanceRef
from ..part10 import Expected, identity_of, identity_problem


class Placement(Protocol):
    """What an object of a ref's form must say it is, and how it is named
    outside this process.  A form that rewrites identities (de-identification)
    brings its own; every other form is :class:`AsListed`."""

    def expected(self, ref: InstanceRef) -> Expected:
        """The instance, series, study and Patient ID an object of ``ref`` (in
        its form) must name."""
        ...

    def outside_uid(self, uid: str, form: str) -> str:
        """The UID that names an instance or series of ``form`` outside this
        process (in the shared tier's keys)."""
        ...


class AsListed:
    """Objects say they are what the listing says (every form that keeps identities)."""

    def expected(self, ref: InstanceRef) -> Expected:
        return Expected.of_instance(ref)

    def outside_uid(self, uid: str, form: str) -> str:
        return uid


AS_LISTED = AsListed()


def placement_problem(data: bytes, ref: InstanceRef, placement: Placement = AS_LISTED) -> str | None:
    """Why ``data`` is not the instance ``ref`` names where the tree placed it
    (its study, series and the Patient ID its study was listed under, as
    ``placement`` expects them in ``ref``'s form), or None."""
    try:
        ident = identity_of(data)
    except ValueError as exc:
        return f"its identity cannot be read: {exc}"
    return identity_problem(ident, placement.expected(ref))
