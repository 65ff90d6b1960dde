"""Receiving objects over DIMSE (the storage side of C-GET and C-MOVE): the
storage SOP classes trolleyfs takes, the transfer syntaxes, and how they are
laid out in presentation contexts.

The point is to receive each dataset as the archive stores it.  A sender
uses a context whose accepted transfer syntax is the object's own if there is
one, and otherwise converts (uncompressed syntaxes into each other, or it
decompresses, or the sub-operation fails).  Which syntax a context gets is
the acceptor's choice, by the acceptor's own preference: pynetdicom's qrscp
takes Implicit VR from a context offering both, dcmtk takes Explicit VR.  So:

* **C-GET** (we request the contexts, at most 128 on one association): every
  storage class gets one context its peer can always accept; the commonly
  stored classes (:data:`PRIORITY`) also get Explicit VR Little Endian and
  their usual compressed syntaxes in contexts of their own, ahead of it, and
  their catch-all context then offers Implicit VR first (no Explicit), so that
  every acceptor accepts both uncompressed syntaxes.  :func:`get_contexts`
  fills the contexts left by the Q/R model this way, most common first.
* **C-MOVE** (the sender requests; we accept): :func:`scp_contexts` supports
  every storage class pynetdicom knows with every transfer syntax, the
  compressed and otherwise special ones first (a sender offers those only for
  objects stored so), then Explicit, then Implicit VR."""

from __future__ import annotations

from pydicom import uid as sc
from pydicom import uid as ts
from pynetdicom import AllStoragePresentationContexts, build_role
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation

MAX_CONTEXTS = 128  # presentation contexts one association may carry (PS3.8 9.3.2.2: odd IDs 1-255)

EXPLICIT, IMPLICIT = ts.ExplicitVRLittleEndian, ts.ImplicitVRLittleEndian
UNCOMPRESSED = (EXPLICIT, IMPLICIT)
# Each syntax proposed costs: with the 17 pydicom knows for images, opening an
# association took 100-140 ms here (dcmqrscp, Orthanc), with these 11 about 45
# ms.  Left out of C-GET: big endian (retired), deflated and HTJ2K (rare): a
# server holding such objects must convert them, or the sub-operation fails
# and is reported.
COMPRESSED = (
    ts.JPEGLosslessSV1,
    ts.JPEGLossless,
    ts.JPEGBaseline8Bit,
    ts.JPEGExtended12Bit,
    ts.JPEGLSLossless,
    ts.JPEGLSNearLossless,
    ts.JPEG2000Lossless,
    ts.JPEG2000,
    ts.RLELossless,
)
VIDEO = (ts.MPEG2MPML, ts.MPEG2MPHL, ts.MPEG4HP41, ts.MPEG4HP41BD, ts.HEVCMP51)

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

# What C-GET adds to the catch-all contexts while there is room, most common
# first: (class, transfer syntax) each in a context of its own.  Explicit VR
# for the classes most objects are; then the compressed syntaxes archives
# store those classes in (lossless JPEG and JPEG 2000 for CT/MR/CR/DX/MG/XA,
# baseline JPEG for ultrasound, secondary capture and photographs).
_EXPLICIT_FIRST = (
    sc.CTImageStorage,
    sc.MRImageStorage,
    sc.ComputedRadiographyImageStorage,
    sc.DigitalXRayImageStorageForPresentation,
    sc.DigitalMammographyXRayImageStorageForPresentation,
    sc.UltrasoundImageStorage,
    sc.UltrasoundMultiFrameImageStorage,
    sc.SecondaryCaptureImageStorage,
    sc.NuclearMedicineImageStorage,
    sc.PositronEmissionTomographyImageStorage,
    sc.XRayAngiographicImageStorage,
    sc.XRayRadiofluoroscopicImageStorage,
    sc.EnhancedCTImageStorage,
    sc.EnhancedMRImageStorage,
    sc.BreastTomosynthesisImageStorage,
    sc.RTImageStorage,
    sc.RTDoseStorage,
    sc.SegmentationStorage,
    sc.RTStructureSetStorage,
    sc.RTPlanStorage,
    sc.KeyObjectSelectionDocumentStorage,
    sc.BasicTextSRStorage,
    sc.EnhancedSRStorage,
    sc.ComprehensiveSRStorage,
    sc.XRayRadiationDoseSRStorage,
    sc.GrayscaleSoftcopyPresentationStateStorage,
    sc.EncapsulatedPDFStorage,
    sc.DigitalXRayImageStorageForProcessing,
    sc.DigitalMammographyXRayImageStorageForProcessing,
    sc.DigitalIntraOralXRayImageStorageForPresentation,
)
_COMPRESSED_FIRST = (
    (sc.CTImageStorage, ts.JPEGLosslessSV1),
    (sc.CTImageStorage, ts.JPEG2000Lossless),
    (sc.MRImageStorage, ts.JPEGLosslessSV1),
    (sc.MRImageStorage, ts.JPEG2000Lossless),
    (sc.ComputedRadiographyImageStorage, ts.JPEGLosslessSV1),
    (sc.DigitalXRayImageStorageForPresentation, ts.JPEGLosslessSV1),
    (sc.DigitalMammographyXRayImageStorageForPresentation, ts.JPEG2000Lossless),
    (sc.DigitalMammographyXRayImageStorageForPresentation, ts.JPEGLosslessSV1),
    (sc.UltrasoundImageStorage, ts.JPEGBaseline8Bit),
    (sc.UltrasoundMultiFrameImageStorage, ts.JPEGBaseline8Bit),
    (sc.SecondaryCaptureImageStorage, ts.JPEGBaseline8Bit),
    (sc.XRayAngiographicImageStorage, ts.JPEGLosslessSV1),
    (sc.ComputedRadiographyImageStorage, ts.JPEG2000Lossless),
    (sc.DigitalXRayImageStorageForPresentation, ts.JPEG2000Lossless),
    (sc.CTImageStorage, ts.JPEGLSLossless),
    (sc.MRImageStorage, ts.JPEGLSLossless),
    (sc.CTImageStorage, ts.RLELossless),
    (sc.UltrasoundImageStorage, ts.RLELossless),
    (sc.VLPhotographicImageStorage, ts.JPEGBaseline8Bit),
    (sc.NuclearMedicineImageStorage, ts.JPEGLosslessSV1),
    (sc.PositronEmissionTomographyImageStorage, ts.JPEGLosslessSV1),
    (sc.XRayRadiofluoroscopicImageStorage, ts.JPEGLosslessSV1),
    (sc.CTImageStorage, ts.JPEG2000),
    (sc.MRImageStorage, ts.JPEG2000),
    (sc.DigitalMammographyXRayImageStorageForPresentation, ts.JPEG2000),
)
PRIORITY: tuple[tuple[str, str], ...] = tuple((c, EXPLICIT) for c in _EXPLICIT_FIRST) + _COMPRESSED_FIRST

Contexts = list[tuple[str, tuple[str, ...]]]


def _catch_all(cls: str, has_explicit: bool) -> tuple[str, ...]:
    """The syntaxes of a class's context that any peer can accept."""
    uncompressed = (IMPLICIT,) if has_explicit else UNCOMPRESSED
    if cls in VIDEO_CLASSES:
        return uncompressed + COMPRESSED + VIDEO
    if cls in PIXEL_CLASSES:
        return uncompressed + COMPRESSED
    return uncompressed


def get_contexts(limit: int = MAX_CONTEXTS - 1) -> Contexts:
    """The storage contexts a C-GET association requests, at most ``limit``
    (128 less the Q/R model's): one catch-all per class, then the
    :data:`PRIORITY` singles that fit, each class's singles ahead of its
    catch-all."""
    classes = STORAGE_CLASSES + VIDEO_CLASSES
    if limit < len(classes):
        raise ValueError(f"{len(classes)} storage classes need at least as many contexts, {limit} allowed")
    singles: dict[str, list[str]] = {}
    for cls, syntax in PRIORITY[: limit - len(classes)]:
        singles.setdefault(cls, []).append(syntax)
    contexts: Contexts = []
    for cls in classes:
        contexts += [(cls, (syntax,)) for syntax in singles.get(cls, ())]
        contexts.append((cls, _catch_all(cls, EXPLICIT in singles.get(cls, ()))))
    return contexts


def scp_role_items() -> list[SCP_SCU_RoleSelectionNegotiation]:
    """SCP/SCU role selection for C-GET: we take the Storage SCP role for every storage class."""
    return [build_role(cls, scp_role=True) for cls in (*STORAGE_CLASSES, *VIDEO_CLASSES)]


def scp_contexts() -> Contexts:
    """What a storage SCP (C-MOVE's destination) supports: every storage class
    pynetdicom knows, each with every transfer syntax, those a sender offers
    only for objects stored so first, then Explicit, then Implicit VR."""
    special = (
        *COMPRESSED,
        *VIDEO,
        ts.JPEG2000MC,
        ts.JPEG2000MCLossless,
        ts.HTJ2KLossless,
        ts.HTJ2KLosslessRPCL,
        ts.HTJ2K,
    )
    # big endian and deflated come last: a sender proposes them beside little
    # endian for any uncompressed object (dcmqrscp does), and taking them first
    # had it convert every object to big endian
    syntaxes = tuple(
        dict.fromkeys((*special, EXPLICIT, IMPLICIT, ts.DeflatedExplicitVRLittleEndian, ts.ExplicitVRBigEndian))
    )
    known = (c.abstract_syntax for c in AllStoragePresentationContexts)
    classes = dict.fromkeys((*STORAGE_CLASSES, *VIDEO_CLASSES, *known))
    return [(str(cls), syntaxes) for cls in classes if cls]
