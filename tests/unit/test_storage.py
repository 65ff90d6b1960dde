"""The DIMSE storage layout: C-GET's requested presentation contexts fit one
association, every storage class can be accepted by any peer, the common image
classes have each lossless syntax archives store in a context of its own ahead
of Implicit VR, and no lossy syntax can be chosen where an uncompressed one
could; what a storage SCP supports, and in which order it prefers it."""

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
        (u.CTImageStorage, u.RLELossless),
        (u.MRImageStorage, u.ExplicitVRLittleEndian),
        (u.MRImageStorage, u.JPEGLSLossless),
        (u.UltrasoundMultiFrameImageStorage, u.JPEGBaseline8Bit),
        (u.UltrasoundImageStorage, u.RLELossless),
        (u.DigitalMammographyXRayImageStorageForPresentation, u.JPEG2000Lossless),
        (u.XRayAngiographicImageStorage, u.JPEGLosslessSV1),
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
    assert contexts[catch_all][1][0] in (storage.IMPLICIT, storage.EXPLICIT)


def test_every_common_image_class_has_each_archive_lossless_syntax_alone() -> None:
    """Issue 17, defect 7: a sender that cannot decompress (pynetdicom's qrscp)
    can send an RLE, JPEG-LS, JPEG 2000 or JPEG lossless object of a common
    class only over a context of that syntax alone; all fit one association."""
    contexts = get_contexts()
    assert len(contexts) <= storage.MAX_CONTEXTS
    assert len(storage.COMMON_IMAGES) >= 9
    for cls, _ in storage.COMMON_IMAGES:
        for syntax in storage.ARCHIVE_LOSSLESS:
            assert (cls, (syntax,)) in contexts, (u.UID(cls).name, u.UID(syntax).name)
    assert {u.RLELossless, u.JPEGLSLossless, u.JPEG2000Lossless, u.JPEGLosslessSV1} == set(storage.ARCHIVE_LOSSLESS)
    for cls in (u.CTImageStorage, u.MRImageStorage, u.ComputedRadiographyImageStorage):
        assert (cls, (storage.EXPLICIT,)) in contexts  # what room is left: Explicit VR for the most common


def test_no_lossy_syntax_where_an_uncompressed_one_could_be_chosen() -> None:
    """A lossy syntax is never in a context beside another (the acceptor could
    choose it) but for video, and a class's lossy context comes after an
    Explicit VR context of its own (dcmtk sends over the first accepted context
    of the class, converting into it)."""
    by_class: dict[str, list[tuple[str, ...]]] = {}
    for cls, syntaxes in storage.get_contexts():
        by_class.setdefault(cls, []).append(syntaxes)
        if cls not in storage.VIDEO_CLASSES and len(syntaxes) > 1:
            assert not set(syntaxes) & set(storage.LOSSY), u.UID(cls).name
    for cls, lists in by_class.items():
        lossy = [i for i, s in enumerate(lists) if len(s) == 1 and s[0] in storage.LOSSY]
        if lossy:
            assert lists[0] == (storage.EXPLICIT,) and lossy[0] > 0, u.UID(cls).name
    assert {u.JPEGBaseline8Bit, u.JPEGExtended12Bit, u.JPEGLSNearLossless, u.JPEG2000, u.HTJ2K} <= set(storage.LOSSY)
    assert not set(storage.LOSSY) & set(storage.LOSSLESS + storage.UNCOMPRESSED)


def test_a_tighter_limit_keeps_the_most_common_singles() -> None:
    n = len(storage.STORAGE_CLASSES + storage.VIDEO_CLASSES)
    contexts = storage.get_contexts(n + 4)
    assert len(contexts) == n + 4
    for syntax in storage.ARCHIVE_LOSSLESS:
        assert (u.CTImageStorage, (syntax,)) in contexts  # the most common class's lossless syntaxes come first
    with pytest.raises(ValueError, match="storage classes need at least as many contexts"):
        storage.get_contexts(n - 1)


def test_roles_cover_every_storage_class() -> None:
    roles = storage.scp_role_items()
    assert {r.sop_class_uid for r in roles} == {c for c, _ in storage.get_contexts()}
    assert all(r.scp_role and not r.scu_role for r in roles)


def test_scp_contexts_accept_everything_preferring_uncompressed_and_lossy_last() -> None:
    """Issue 17, defect 6: the receiver prefers the uncompressed syntaxes over
    any conversion, then the lossless compressed ones; a lossy syntax only when
    a context offers nothing else."""
    contexts = dict(storage.scp_contexts())
    assert set(storage.STORAGE_CLASSES + storage.VIDEO_CLASSES) <= set(contexts)
    assert len(contexts) >= 150  # every storage class pynetdicom knows
    syntaxes = contexts[u.CTImageStorage]
    order = syntaxes.index
    assert order(storage.EXPLICIT) < order(storage.IMPLICIT) < min(order(c) for c in storage.LOSSLESS)
    assert {u.JPEG2000Lossless, u.RLELossless, u.DeflatedExplicitVRLittleEndian} <= set(syntaxes)
    # a sender proposes big endian and deflated beside little endian for any
    # uncompressed object: taken only when nothing else is offered, but before a lossy one
    last_lossless = max(order(u.DeflatedExplicitVRLittleEndian), order(u.ExplicitVRBigEndian))
    assert order(storage.IMPLICIT) < min(order(u.DeflatedExplicitVRLittleEndian), order(u.ExplicitVRBigEndian))
    assert all(order(lossy) > last_lossless for lossy in storage.LOSSY)
    assert set(syntaxes) == set(storage.LOSSLESS + storage.UNCOMPRESSED + storage.LOSSY) | {
        u.DeflatedExplicitVRLittleEndian,
        u.ExplicitVRBigEndian,
    }
