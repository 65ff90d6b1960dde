"""Which instances cannot be made safe, and so are not served.

trolleyfs never changes pixel data, so it cannot remove text burned into the
pixels nor a face a photograph shows.  An instance is left out when:

1. its Burned In Annotation (0028,0301) is YES, or its Recognizable Visual
   Features (0028,0302) is YES;
2. it is of a SOP class where text on the pixels is common, unless its Burned
   In Annotation says NO (a flag most such objects do not carry, so most are
   left out):

   - Secondary Capture, single- and multi-frame: screenshots, scanned paper,
     dose report screens (a CT's dose page is a Secondary Capture with the
     patient's name on it), third-party post-processing results;
   - Ultrasound (single- and multi-frame, the retired classes, Enhanced US
     Volume, Photoacoustic): the scanner's screen, with the patient's name,
     ID and date in its header band, is what is stored;
   - the Visible Light classes (endoscopy, microscopy, whole-slide, slide
     coordinates, photography, ophthalmic photography, dermoscopy, their
     video forms and the retired trial classes): endoscopy towers and fundus
     cameras write patient data into the video, and slide scanners photograph
     the slide's label;
   - Encapsulated PDF and CDA: documents, made of text;

3. it is of a class that shows a body's surface, unless its Recognizable
   Visual Features says NO: VL Photographic and Video Photographic images,
   and Encapsulated STL, OBJ and MTL (surface models, often of a face);
4. its Modality is one where burned-in text is common, whatever its class,
   unless Burned In Annotation says NO: US, IVUS, ES (endoscopy), XC
   (external camera), GM (general microscopy), SM (slide microscopy), OP
   (ophthalmic photography), DOC (document), OT (other: screenshots);
5. (objects only) an overlay is stored in the pixel data's unused high bits
   (an overlay group without its own Overlay Data): it cannot be removed
   without changing the pixels.

CT, MR, PET, NM, CR, DX, MG, XA, RF and the other classes are served unless
their flag says YES: their scanners do not usually write text into the
pixels (and where they may, as in DX and MG, the flag is Type 1).  Text
burned into the pixels of an instance whose flags are wrong is NOT detected:
trolleyfs does not read pixels.

An admin may include these instances anyway (``include_burned_in = true``),
knowing the risk; the decision here is then only reported."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydicom._uid_dict import UID_dictionary
from pydicom.dataset import Dataset
from pydicom.uid import UID

# what an instance listing needs for the same decision as the object's
LISTING_FIELDS = ("SOPClassUID", "Modality", "BurnedInAnnotation", "RecognizableVisualFeatures")

_SCREEN_CLASS_KEYWORDS = (
    "SecondaryCaptureImageStorage",
    "MultiFrameSingleBitSecondaryCaptureImageStorage",
    "MultiFrameGrayscaleByteSecondaryCaptureImageStorage",
    "MultiFrameGrayscaleWordSecondaryCaptureImageStorage",
    "MultiFrameTrueColorSecondaryCaptureImageStorage",
    "UltrasoundImageStorage",
    "UltrasoundImageStorageRetired",
    "UltrasoundMultiFrameImageStorage",
    "UltrasoundMultiFrameImageStorageRetired",
    "EnhancedUSVolumeStorage",
    "PhotoacousticImageStorage",
    "VLImageStorageTrial",
    "VLMultiFrameImageStorageTrial",
    "VLEndoscopicImageStorage",
    "VideoEndoscopicImageStorage",
    "VLMicroscopicImageStorage",
    "VideoMicroscopicImageStorage",
    "VLSlideCoordinatesMicroscopicImageStorage",
    "VLWholeSlideMicroscopyImageStorage",
    "VLPhotographicImageStorage",
    "VideoPhotographicImageStorage",
    "OphthalmicPhotography8BitImageStorage",
    "OphthalmicPhotography16BitImageStorage",
    "DermoscopicPhotographyImageStorage",
    "EncapsulatedPDFStorage",
    "EncapsulatedCDAStorage",
)
_FACE_CLASS_KEYWORDS = (
    "VLPhotographicImageStorage",
    "VideoPhotographicImageStorage",
    "EncapsulatedSTLStorage",
    "EncapsulatedOBJStorage",
    "EncapsulatedMTLStorage",
)
SCREEN_MODALITIES = frozenset({"US", "IVUS", "ES", "XC", "GM", "SM", "OP", "DOC", "OT"})


_BY_KEYWORD = {entry[4]: uid for uid, entry in UID_dictionary.items()}


def _uids(keywords: tuple[str, ...]) -> frozenset[str]:
    """The UIDs of SOP classes named by their keywords in pydicom's UID dictionary."""
    return frozenset(_BY_KEYWORD[k] for k in keywords)


SCREEN_CLASSES = _uids(_SCREEN_CLASS_KEYWORDS)
FACE_CLASSES = _uids(_FACE_CLASS_KEYWORDS)


def _flag(value: Any) -> str:
    return str(value if value is not None else "").strip().rstrip("\0").strip().upper()


def _class_name(uid: str) -> str:
    name = UID(uid).name
    return f"{name} ({uid})" if name != uid else uid


def exclusion_reason(attrs: Mapping[str, Any]) -> str | None:
    """Why an instance with these attributes (SOPClassUID, Modality,
    BurnedInAnnotation, RecognizableVisualFeatures, as strings) must be left
    out; None if it may be served."""
    burned = _flag(attrs.get("BurnedInAnnotation"))
    visual = _flag(attrs.get("RecognizableVisualFeatures"))
    if burned == "YES":
        return "Burned In Annotation is YES"
    if visual == "YES":
        return "Recognizable Visual Features is YES"
    sop = str(attrs.get("SOPClassUID") or "").strip().rstrip("\0")
    modality = _flag(attrs.get("Modality"))
    if sop in FACE_CLASSES and visual != "NO":
        return f"{_class_name(sop)} may show a face, and Recognizable Visual Features is not NO"
    if sop in SCREEN_CLASSES and burned != "NO":
        return f"{_class_name(sop)} often has text burned into its pixels, and Burned In Annotation is not NO"
    if modality in SCREEN_MODALITIES and burned != "NO":
        return f"modality {modality} often has text burned into its pixels, and Burned In Annotation is not NO"
    return None


def embedded_overlay(ds: Dataset) -> int | None:
    """The group of an overlay kept in the pixel data's unused bits, if any."""
    for group in range(0x6000, 0x6020, 2):
        if (group << 16 | 0x0010) in ds and (group << 16 | 0x3000) not in ds:
            return group
    return None


def dataset_exclusion(ds: Dataset) -> str | None:
    """Why the object ``ds`` must be left out; None if it may be served."""
    reason = exclusion_reason({k: ds.get(k) for k in LISTING_FIELDS})
    if reason is None and (group := embedded_overlay(ds)) is not None:
        reason = f"an overlay ({group:04X},xxxx) is stored in the pixel data's unused bits"
    return reason
