"""The options of PS3.15 Annex E's Basic Application Level Confidentiality
Profile: their names in the config, their column in the standard's table,
and their code in CID 7050 (De-identification Method).

A name in the config is the option's name in the standard in kebab-case
(``retain-uids``, ``clean-descriptors``,
``retain-longitudinal-temporal-information-modified-dates``).  The standard's
own spellings are accepted too: the section titles ("Retain Longitudinal
Temporal Information With Modified Dates Option") and CID 7050's code
meanings ("Retain Longitudinal Temporal Information Modified Dates Option"),
in any case, with spaces, hyphens or underscores, with or without "Option".

The codes (value, scheme, meaning) come from pydicom's copy of CID 7050, not
from a list typed here."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code


class Option(enum.Enum):
    """One option; the value is its name in the config."""

    RETAIN_SAFE_PRIVATE = "retain-safe-private"
    RETAIN_UIDS = "retain-uids"
    RETAIN_DEVICE_IDENTITY = "retain-device-identity"
    RETAIN_INSTITUTION_IDENTITY = "retain-institution-identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain-patient-characteristics"
    RETAIN_FULL_DATES = "retain-longitudinal-temporal-information-full-dates"
    RETAIN_MODIFIED_DATES = "retain-longitudinal-temporal-information-modified-dates"
    CLEAN_DESCRIPTORS = "clean-descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean-structured-content"
    CLEAN_GRAPHICS = "clean-graphics"

    @property
    def column(self) -> str:
        """The option's column in the standard's table (annex_e.json)."""
        return _COLUMNS[self]

    @property
    def code(self) -> Code:
        """The option's code in CID 7050."""
        return _code(_CODE_KEYWORDS[self])


_COLUMNS = {
    Option.RETAIN_SAFE_PRIVATE: "rtnSafePrivOpt",
    Option.RETAIN_UIDS: "rtnUIDsOpt",
    Option.RETAIN_DEVICE_IDENTITY: "rtnDevIdOpt",
    Option.RETAIN_INSTITUTION_IDENTITY: "rtnInstIdOpt",
    Option.RETAIN_PATIENT_CHARACTERISTICS: "rtnPatCharsOpt",
    Option.RETAIN_FULL_DATES: "rtnLongFullDatesOpt",
    Option.RETAIN_MODIFIED_DATES: "rtnLongModifDatesOpt",
    Option.CLEAN_DESCRIPTORS: "cleanDescOpt",
    Option.CLEAN_STRUCTURED_CONTENT: "cleanStructContOpt",
    Option.CLEAN_GRAPHICS: "cleanGraphOpt",
}

# pydicom's keywords of the CID 7050 concepts
_CODE_KEYWORDS = {
    Option.RETAIN_SAFE_PRIVATE: "RetainSafePrivateOption",
    Option.RETAIN_UIDS: "RetainUidsOption",
    Option.RETAIN_DEVICE_IDENTITY: "RetainDeviceIdentityOption",
    Option.RETAIN_INSTITUTION_IDENTITY: "RetainInstitutionIdentityOption",
    Option.RETAIN_PATIENT_CHARACTERISTICS: "RetainPatientCharacteristicsOption",
    Option.RETAIN_FULL_DATES: "RetainLongitudinalTemporalInformationFullDatesOption",
    Option.RETAIN_MODIFIED_DATES: "RetainLongitudinalTemporalInformationModifiedDatesOption",
    Option.CLEAN_DESCRIPTORS: "CleanDescriptorsOption",
    Option.CLEAN_STRUCTURED_CONTENT: "CleanStructuredContentOption",
    Option.CLEAN_GRAPHICS: "CleanGraphicsOption",
}

PROFILE_KEYWORD = "BasicApplicationConfidentialityProfile"
# Options of the standard that trolleyfs refuses: it never changes pixel data.
PIXEL_OPTIONS = ("clean-pixel-data", "clean-recognizable-visual-features")
EXCLUSIVE = frozenset({Option.RETAIN_FULL_DATES, Option.RETAIN_MODIFIED_DATES})


def _code(keyword: str) -> Code:
    return getattr(codes.DCM, keyword)  # type: ignore[no-any-return]


def profile_code() -> Code:
    """113100, Basic Application Confidentiality Profile."""
    return _code(PROFILE_KEYWORD)


def normalize(name: str) -> str:
    """The comparable form of an option's name: lower case, words joined by
    hyphens, without a trailing "option" and without "with"."""
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    if words and words[-1] == "option":
        words.pop()
    return "-".join(w for w in words if w != "with")


_BY_NAME = {normalize(o.value): o for o in Option}


class UnknownOption(ValueError):
    """A name that is not an option trolleyfs applies; the message says why."""


def parse_option(name: str) -> Option | None:
    """The option ``name`` stands for; None for the basic profile itself
    (always applied).  UnknownOption for anything else."""
    key = normalize(name)
    if key in _BY_NAME:
        return _BY_NAME[key]
    if key in (normalize(profile_code().meaning), "basic-application-level-confidentiality-profile"):
        return None
    if key in PIXEL_OPTIONS:
        raise UnknownOption(
            f"{name!r}: trolleyfs never changes pixel data; instances whose pixels may identify a patient "
            "are left out instead (see include_burned_in)"
        )
    names = ", ".join(o.value for o in Option)
    raise UnknownOption(f"{name!r} is not an option of PS3.15 Annex E (expected one of: {names})")


def parse_options(names: Iterable[str]) -> frozenset[Option]:
    """The options of ``names``; UnknownOption for an unknown name or for
    both temporal options at once."""
    chosen = frozenset(o for o in map(parse_option, names) if o is not None)
    if chosen >= EXCLUSIVE:
        raise UnknownOption(f"{' and '.join(sorted(o.value for o in EXCLUSIVE))} exclude each other: choose one")
    return chosen
