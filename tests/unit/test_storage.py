"""The DIMSE storage layout: C-GET's requested presentation contexts fit one
association, every storage class can be accepted by any peer, and the common
classes have Explicit VR and their compressed syntaxes in contexts of their
own ahead of Implicit VR; what a storage SCP supports."""

from __future__ import annotations

import pytest
from pydicom import uid as u

from trolleyfs.retrieve.cget import GET_MODEL, get_contexts
from trolleyfs.transport import storage


def test_cget_contexts_fill_one_association() -> None:
    contexts = get_contexts()
    assert contexts[0] == (GET_MODEL, ())
    assert len(contexts) == storage.MAX_CONTEXTS  # all 128 used, none more
    for uid, syntaxes in contexts[1:]:
        assert syntaxes and len(set(syntaxes)) == len(syntaxes), uid


def test_every_class_has_a_context_any_peer_accepts() -> None:
    """Implicit VR Little Endian is the one syntax every peer must support."""
    by_class: dict[str, list[tuple[str, ...]]] = {}
    for uid, syntaxes in storage.get_contexts():
        by_class.setdefault(uid, []).append(syntaxes)
    assert set(by_class) == set(storage.STORAGE_CLASSES + storage.VIDEO_CLASSES)
    for uid, lists in by_class.items():
        assert sum(storage.IMPLICIT in s for s in lists) == 1, uid
        assert sum(storage.EXPLICIT in s for s in lists) == 1, uid  # one place where Explicit can be chosen
        assert lists[-1][0] in (storage.IMPLICIT, storage.EXPLICIT)  # the catch-all comes last, uncompressed first


@pytest.mark.parametrize(
    ("cls", "syntax"),
    [
        (u.CTImageStorage, u.ExplicitVRLittleEndian),
        (u.CTImageStorage, u.JPEG2000Lossless),
        (u.CTImageStorage, u.JPEGLosslessSV1),
        (u.MRImageStorage, u.ExplicitVRLittleEndian),
        (u.UltrasoundMultiFrameImageStorage, u.JPEGBaseline8Bit),
        (u.ComprehensiveSRStorage, u.ExplicitVRLittleEndian),
        (u.DigitalMammographyXRayImageStorageForPresentation, u.JPEG2000Lossless),
    ],
)
def test_common_classes_get_their_syntaxes_alone_ahead_of_implicit(cls: str, syntax: str) -> None:
    """An acceptor chooses one syntax per context by its own preference
    (pynetdicom's: Implicit first): only a context offering nothing else
    makes it accept Explicit VR or a compressed syntax."""
    contexts = storage.get_contexts()
    alone = contexts.index((cls, (syntax,)))
    catch_all = next(i for i, (c, s) in enumerate(contexts) if c == cls and storage.IMPLICIT in s)
    assert alone < catch_all
    assert contexts[catch_all][1][0] == storage.IMPLICIT and storage.EXPLICIT not in contexts[catch_all][1]


def test_a_tighter_limit_keeps_the_most_common_singles() -> None:
    n = len(storage.STORAGE_CLASSES + storage.VIDEO_CLASSES)
    contexts = storage.get_contexts(n + 2)
    assert len(contexts) == n + 2
    assert (u.CTImageStorage, (u.ExplicitVRLittleEndian,)) in contexts
    assert (u.MRImageStorage, (u.ExplicitVRLittleEndian,)) in contexts
    with pytest.raises(ValueError, match="storage classes need at least as many contexts"):
        storage.get_contexts(n - 1)


def test_roles_cover_every_storage_class() -> None:
    roles = storage.scp_role_items()
    assert {r.sop_class_uid for r in roles} == {c for c, _ in storage.get_contexts()}
    assert all(r.scp_role and not r.scu_role for r in roles)


def test_scp_contexts_accept_everything_preferring_the_special_syntaxes() -> None:
    contexts = dict(storage.scp_contexts())
    assert set(storage.STORAGE_CLASSES + storage.VIDEO_CLASSES) <= set(contexts)
    assert len(contexts) >= 150  # every storage class pynetdicom knows
    syntaxes = contexts[u.CTImageStorage]
    assert syntaxes.index(u.RLELossless) < syntaxes.index(storage.EXPLICIT) < syntaxes.index(storage.IMPLICIT)
    assert {u.JPEG2000Lossless, u.RLELossless, u.DeflatedExplicitVRLittleEndian} <= set(syntaxes)
    # a sender proposes big endian and deflated beside little endian for any
    # uncompressed object: taken only when nothing else is offered
    assert syntaxes[-2:] == (u.DeflatedExplicitVRLittleEndian, u.ExplicitVRBigEndian)
