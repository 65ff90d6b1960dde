"""Receiving objects over DIMSE (the storage side of C-GET and C-MOVE): the
storage SOP classes trolleyfs takes, the transfer syntaxes, and how they are
laid out in presentation contexts.

The point is to receive each dataset as the archive stores it, and never a
lossy copy of a lossless original.  A sender uses a context whose accepted
transfer syntax is the object's own if there is one, and otherwise converts
(uncompressed syntaxes into each other, or it decompresses, or it
compresses, or the sub-operation fails); some senders (dcmtk's) simply use the
first accepted context of the class and convert into it.  Which syntax a
context gets is the acceptor's choice, by the acceptor's own preference:
pynetdicom's qrscp takes Implicit VR from a context offering both, dcmtk takes
Explicit VR.  So:

* **C-GET** (we request the contexts, at most 128 on one association): every
  storage class gets one catch-all context its peer can always accept
  (uncompressed and the lossless compressed syntaxes; lossy ones only for
  video); the classes of :data:`COMMON_IMAGES` also get each lossless syntax
  archives store (:data:`ARCHIVE_LOSSLESS`) in a context of its own, since a
  sender that cannot decompress has no other way to send such an object, and
  the lossy syntax they are commonly stored in behind an Explicit VR context
  of their own; then Explicit VR alone for more classes (:data:`EXPLICIT_ALSO`)
  while room remains.  :data:`PRIORITY` is that order; :func:`get_contexts`
  fills the contexts left by the Q/R model with it, each class's singles
  uncompressed first, lossy last, ahead of its catch-all.
* **C-MOVE** (the sender requests; we accept): :func:`scp_contexts` supports
  every storage class pynetdicom knows with every transfer syntax, in this
  order of preference: the lossless compressed ones (a sender offers those only
  for objects stored so), Explicit VR, Implicit VR, deflated and big endian,
  and the lossy ones last: a lossy syntax is accepted only from a context that
  offers nothing else."""

from __future__ import annotations

from pydicom import uid as sc
from pydicom import uid as ts
from pynetdicom import AllStoragePresentationContexts, build_role
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation

MAX_CONTEXTS = 128  # presentation contexts one association may carry (PS3.8 9.3.2.2: odd IDs 1-255)

EXPLICIT, IMPLICIT = ts.ExplicitVRLittleEndian, ts.ImplicitVRLittleEndian
UNCOMPRESSED = (EXPLICIT, IMPLICIT)
# The lossless compressed syntaxes, the common ones first.
LOSSLESS = (
    ts.JPEGLosslessSV1,
    ts.JPEGLossless,
    ts.JPEGLSLossless,
    ts.JPEG2000Lossless,
    ts.RLELossless,
    ts.JPEG2000MCLossless,
    ts.HTJ2KLossless,
    ts.HTJ2KLosslessRPCL,
)
# Syntaxes that may lose information: JPEG 2000 (.91) and JPEG-LS near-lossless
# may be lossless for one object and lossy for the next; the video syntaxes are
# lossy by nature.
VIDEO = (
    ts.MPEG2MPML,
    ts.MPEG2MPHL,
    ts.MPEG4HP41,
    ts.MPEG4HP41BD,
    ts.MPEG4HP422D,
    ts.MPEG4HP423D,
    ts.MPEG4HP42STEREO,
    ts.HEVCMP51,
    ts.HEVCM10P51,
)
LOSSY = (
    ts.JPEGBaseline8Bit,
    ts.JPEGExtended12Bit,
    ts.JPEGLSNearLossless,
    ts.JPEG2000,
    ts.JPEG2000MC,
    ts.HTJ2K,
    *VIDEO,
)
# What archives store images in, losslessly: each gets a C-GET context of its
# own for the common image classes.  Each syntax proposed costs: with the 17
# pydicom knows for images, opening an association took 100-140 ms here
# (dcmqrscp, Orthanc), with about 10 some 45 ms; so the catch-all contexts of
# C-GET carry the lossless syntaxes archives use and leave out big endian
# (retired), deflated and the rare ones (a server holding such objects must
# convert them, or the sub-operation fails and is reported).
ARCHIVE_LOSSLESS = (ts.JPEGLosslessSV1, ts.JPEG2000Lossless, ts.JPEGLSLossless, ts.RLELossless)
COMPRESSED = (ts.JPEGLosslessSV1, ts.JPEGLossless, ts.JPEGLSLossless, ts.JPEG2000Lossless, ts.RLELossless)

# Image storage classes of the common modalities, their enhanced/multi-frame
# forms, and the non-image objects that live in the same studies (SR, KOS,
# presentation states, segmentations, RT, PDF, ECG).
PIXEL_CLASSES = (
    # CR / DX / MG / IO
    sc.ComputedRadiographyImageStorage,
    sc.DigitalXRayImageStorageForPresentation,
    sc.DigitalXRayImageStorageForProcessing,
    sc.DigitalMammographyXRayImageStorageForPresentation,
    sc.DigitalMammographyXRayImageStorageForProcessing,
    sc.DigitalIntraOralXRayImageStorageForPresentation,
    sc.DigitalIntraOralXRayImageStorageForProcessing,
    sc.BreastTomosynthesisImageStorage,
    sc.BreastProjectionXRayImageStorageForPresentation,
    sc.BreastProjectionXRayImageStorageForProcessing,
    # CT / MR
    sc.CTImageStorage,
    sc.EnhancedCTImageStorage,
    sc.LegacyConvertedEnhancedCTImageStorage,
    sc.MRImageStorage,
    sc.EnhancedMRImageStorage,
    sc.EnhancedMRColorImageStorage,
    sc.LegacyConvertedEnhancedMRImageStorage,
    # US
    sc.UltrasoundImageStorage,
    sc.UltrasoundMultiFrameImageStorage,
    sc.EnhancedUSVolumeStorage,
    # secondary capture
    sc.SecondaryCaptureImageStorage,
    sc.MultiFrameSingleBitSecondaryCaptureImageStorage,
    sc.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    sc.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    sc.MultiFrameTrueColorSecondaryCaptureImageStorage,
    # XA / RF
    sc.XRayAngiographicImageStorage,
    sc.EnhancedXAImageStorage,
    sc.XRayRadiofluoroscopicImageStorage,
    sc.EnhancedXRFImageStorage,
    sc.XRay3DAngiographicImageStorage,
    sc.XRay3DCraniofacialImageStorage,
    # NM / PET
    sc.NuclearMedicineImageStorage,
    sc.PositronEmissionTomographyImageStorage,
    sc.EnhancedPETImageStorage,
    sc.LegacyConvertedEnhancedPETImageStorage,
    # RT images and doses
    sc.RTImageStorage,
    sc.RTDoseStorage,
    # visible light, ophthalmology, intravascular OCT
    sc.VLEndoscopicImageStorage,
    sc.VLMicroscopicImageStorage,
    sc.VLSlideCoordinatesMicroscopicImageStorage,
    sc.VLPhotographicImageStorage,
    sc.VLWholeSlideMicroscopyImageStorage,
    sc.OphthalmicPhotography8BitImageStorage,
    sc.OphthalmicPhotography16BitImageStorage,
    sc.OphthalmicTomographyImageStorage,
    sc.WideFieldOphthalmicPhotographyStereographicProjectionImageStorage,
    sc.IntravascularOpticalCoherenceTomographyImageStorageForPresentation,
    # derived images
    sc.SegmentationStorage,
    sc.ParametricMapStorage,
)
DOCUMENT_CLASSES = (
    sc.MRSpectroscopyStorage,
    sc.RTStructureSetStorage,
    sc.RTPlanStorage,
    sc.RTIonPlanStorage,
    sc.RTBeamsTreatmentRecordStorage,
    sc.RTIonBeamsTreatmentRecordStorage,
    sc.RTTreatmentSummaryRecordStorage,
    sc.SurfaceSegmentationStorage,
    sc.SpatialRegistrationStorage,
    sc.DeformableSpatialRegistrationStorage,
    sc.RealWorldValueMappingStorage,
    sc.RawDataStorage,
    # presentation states
    sc.GrayscaleSoftcopyPresentationStateStorage,
    sc.ColorSoftcopyPresentationStateStorage,
    sc.BlendingSoftcopyPresentationStateStorage,
    # structured reports, key objects, documents, waveforms
    sc.BasicTextSRStorage,
    sc.EnhancedSRStorage,
    sc.ComprehensiveSRStorage,
    sc.Comprehensive3DSRStorage,
    sc.ExtensibleSRStorage,
    sc.KeyObjectSelectionDocumentStorage,
    sc.MammographyCADSRStorage,
    sc.ChestCADSRStorage,
    sc.XRayRadiationDoseSRStorage,
    sc.EnhancedXRayRadiationDoseSRStorage,
    sc.RadiopharmaceuticalRadiationDoseSRStorage,
    sc.EncapsulatedPDFStorage,
    sc.EncapsulatedCDAStorage,
    sc.TwelveLeadECGWaveformStorage,
    sc.GeneralECGWaveformStorage,
)
VIDEO_CLASSES = (sc.VideoEndoscopicImageStorage, sc.VideoMicroscopicImageStorage, sc.VideoPhotographicImageStorage)
STORAGE_CLASSES = PIXEL_CLASSES + DOCUMENT_CLASSES  # the classes C-GET takes, besides video

# C-GET's contexts of their own, beyond one catch-all per class.  The 82
# classes leave 45 of the 127 contexts; what goes there is ranked by what its
# absence costs, then by how common the class is:
#
# 1. COMMON_IMAGES, most common first (roughly their share of the objects in a
#    general hospital's archive): each lossless syntax of ARCHIVE_LOSSLESS in a
#    context of its own, and the lossy syntax the class is commonly stored in
#    (baseline JPEG for ultrasound and secondary captures) behind an Explicit
#    VR context of its own.  Without these a sender that cannot decompress
#    (pynetdicom's qrscp, tiny-pacs) cannot send such an object at all: its
#    catch-all context is accepted as Implicit VR; and a sender that uses the
#    first accepted context of a class (dcmtk) never meets the lossy one first.
# 2. EXPLICIT_ALSO, most common first: Explicit VR alone, while room remains.
#    Without it such a sender converts Explicit VR objects to Implicit VR
#    (lossless, but not the bytes the archive stores).
#
# That is 42 + 3 of the 45: CT, MR and CR also get Explicit VR alone.
#
#   class             contexts of their own (in this order)            catch-all
#   CT, MR, CR        Explicit, JPEG LL SV1, J2K LL, JPEG-LS LL, RLE   Implicit + lossless
#   DX, MG, XA        JPEG LL SV1, J2K LL, JPEG-LS LL, RLE             Explicit, Implicit + lossless
#   US, US MF, SC     Explicit, JPEG LL SV1, J2K LL, JPEG-LS LL, RLE,  Implicit + lossless
#                     JPEG Baseline
#   other images      -                                                Explicit, Implicit + lossless
#   video             -                                                Explicit, Implicit + lossless + video
#   other objects     -                                                Explicit, Implicit
COMMON_IMAGES: tuple[tuple[str, str | None], ...] = (
    (sc.CTImageStorage, None),
    (sc.MRImageStorage, None),
    (sc.ComputedRadiographyImageStorage, None),
    (sc.DigitalXRayImageStorageForPresentation, None),
    (sc.DigitalMammographyXRayImageStorageForPresentation, None),
    (sc.UltrasoundImageStorage, ts.JPEGBaseline8Bit),
    (sc.UltrasoundMultiFrameImageStorage, ts.JPEGBaseline8Bit),
    (sc.SecondaryCaptureImageStorage, ts.JPEGBaseline8Bit),
    (sc.XRayAngiographicImageStorage, None),
)
EXPLICIT_ALSO = (
    sc.CTImageStorage,
    sc.MRImageStorage,
    sc.ComputedRadiographyImageStorage,
    sc.DigitalXRayImageStorageForPresentation,
    sc.DigitalMammographyXRayImageStorageForPresentation,
    sc.XRayAngiographicImageStorage,
    sc.NuclearMedicineImageStorage,
    sc.PositronEmissionTomographyImageStorage,
    sc.XRayRadiofluoroscopicImageStorage,
    sc.EnhancedCTImageStorage,
    sc.EnhancedMRImageStorage,
    sc.BreastTomosynthesisImageStorage,
    sc.KeyObjectSelectionDocumentStorage,
    sc.GrayscaleSoftcopyPresentationStateStorage,
    sc.BasicTextSRStorage,
    sc.EnhancedSRStorage,
    sc.ComprehensiveSRStorage,
    sc.XRayRadiationDoseSRStorage,
    sc.EncapsulatedPDFStorage,
    sc.RTImageStorage,
    sc.RTDoseStorage,
    sc.RTStructureSetStorage,
    sc.RTPlanStorage,
    sc.SegmentationStorage,
)


def _priority() -> tuple[tuple[str, str], ...]:
    first: list[tuple[str, str]] = []
    for cls, lossy in COMMON_IMAGES:
        if lossy is not None:
            first.append((cls, EXPLICIT))  # never a lossy context without an uncompressed one ahead of it
        first += [(cls, syntax) for syntax in ARCHIVE_LOSSLESS]
        if lossy is not None:
            first.append((cls, lossy))
    return tuple(dict.fromkeys(first + [(cls, EXPLICIT) for cls in EXPLICIT_ALSO]))


PRIORITY: tuple[tuple[str, str], ...] = _priority()

Contexts = list[tuple[str, tuple[str, ...]]]


def _catch_all(cls: str, has_explicit: bool) -> tuple[str, ...]:
    """The syntaxes of a class's context that any peer can accept; no lossy
    one but for video (no archive keeps video uncompressed)."""
    uncompressed = (IMPLICIT,) if has_explicit else UNCOMPRESSED
    if cls in VIDEO_CLASSES:
        return uncompressed + COMPRESSED + VIDEO
    if cls in PIXEL_CLASSES:
        return uncompressed + COMPRESSED
    return uncompressed


def _rank(syntax: str) -> int:
    """A class's own contexts: uncompressed first, lossy last."""
    return 0 if syntax in UNCOMPRESSED else 2 if syntax in LOSSY else 1


def get_contexts(limit: int = MAX_CONTEXTS - 1) -> Contexts:
    """The storage contexts a C-GET association requests, at most ``limit``
    (128 less the Q/R model's): one catch-all per class, then the
    :data:`PRIORITY` singles that fit, each class's singles (uncompressed
    first, lossy last) ahead of its catch-all."""
    classes = STORAGE_CLASSES + VIDEO_CLASSES
    if limit < len(classes):
        raise ValueError(f"{len(classes)} storage classes need at least as many contexts, {limit} allowed")
    singles: dict[str, list[str]] = {}
    for cls, syntax in PRIORITY[: limit - len(classes)]:
        singles.setdefault(cls, []).append(syntax)
    contexts: Contexts = []
    for cls in classes:
        own = sorted(singles.get(cls, ()), key=_rank)  # stable: PRIORITY's order within a rank
        contexts += [(cls, (syntax,)) for syntax in own]
        contexts.append((cls, _catch_all(cls, EXPLICIT in own)))
    return contexts


def scp_role_items() -> list[SCP_SCU_RoleSelectionNegotiation]:
    """SCP/SCU role selection for C-GET: we take the Storage SCP role for every storage class."""
    return [build_role(cls, scp_role=True) for cls in (*STORAGE_CLASSES, *VIDEO_CLASSES)]


def scp_contexts() -> Contexts:
    """What a storage SCP (C-MOVE's destination) supports: every storage class
    pynetdicom knows, each with every transfer syntax, in this order of
    preference: Explicit and Implicit VR (never a conversion for an object
    stored uncompressed), the lossless compressed ones (what a context offers
    when the object is stored so and the sender cannot decompress), deflated,
    big endian, and the lossy ones last (accepted only from a context that
    offers nothing else)."""
    # big endian and deflated come after little endian: a sender proposes them
    # beside it for any uncompressed object (dcmqrscp does), and taking them
    # first had it convert every object to big endian; a lossy syntax comes
    # last: a sender proposes it beside the uncompressed ones when it is
    # willing to compress (dcmqrscp -xy), and taking it had dcmqrscp try to
    # convert 16-bit CT to baseline JPEG and fail every C-MOVE (0xA702)
    # a compressed syntax comes after the uncompressed ones: a sender may propose
    # it beside them for every object (dcmqrscp -xs), and taking it first had
    # dcmqrscp try to compress each uncompressed CT and fail every C-MOVE
    syntaxes = (EXPLICIT, IMPLICIT, *LOSSLESS, ts.DeflatedExplicitVRLittleEndian, ts.ExplicitVRBigEndian, *LOSSY)
    known = (c.abstract_syntax for c in AllStoragePresentationContexts)
    classes = dict.fromkeys((*STORAGE_CLASSES, *VIDEO_CLASSES, *known))
    return [(str(cls), syntaxes) for cls in classes if cls]
