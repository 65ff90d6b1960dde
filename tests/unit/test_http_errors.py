"""A server's error answer said in its own words (issue 18, item 7): the
message of a JSON error document, whatever its shape, never a document cut in
the middle; the title of an HTML page; plain text shortened at a word."""

from __future__ import annotations

import json

import httpx
import pytest

from trolleyfs.transport.http_errors import MAX_SAID, describe_status


def answer(status: int, body: str, ctype: str) -> httpx.Response:
    return httpx.Response(status, content=body.encode(), headers={"Content-Type": ctype})


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (  # Orthanc (as its DICOMweb plugin answers a 404)
            {
                "Details": "Accessing an inexistent instance with WADO-RS: 5",
                "HttpError": "Not Found",
                "HttpStatus": 404,
                "Message": "Accessing an inexistent item",
                "Method": "GET",
                "OrthancError": "Accessing an inexistent item",
                "OrthancStatus": 7,
                "Uri": "/dicom-web/studies/1/series/2/instances/5",
            },
            "Accessing an inexistent item (Accessing an inexistent instance with WADO-RS: 5)",
        ),
        ({"error": {"code": 404, "message": "Study not found", "status": "NOT_FOUND"}}, "Study not found"),  # Google
        (
            {"error": "invalid_client", "error_description": "Bad client credentials"},
            "Bad client credentials (invalid_client)",
        ),
        ({"type": "about:blank", "title": "Not Found", "detail": "no such study"}, "Not Found (no such study)"),
        ([{"message": "first of a list"}], "first of a list"),
        ({"unrelated": 1}, ""),
    ],
)
def test_a_json_error_document_is_said_by_its_message(body: object, said: str) -> None:
    text = describe_status(answer(404, json.dumps(body, indent=2), "application/json"))
    assert text == "HTTP 404 Not Found" + (f": {said}" if said else "")


def test_long_text_is_cut_at_a_word_and_said_so() -> None:
    text = describe_status(answer(500, "word " * 200, "text/plain"))
    said = text.split(": ", 1)[1]
    assert said.endswith(" ...") and len(said) <= MAX_SAID + 4 and "wor ..." not in said


def test_an_html_page_is_said_by_its_title_and_broken_json_as_text() -> None:
    page = "<html><head><title>Login required</title></head><body>...</body></html>"
    assert describe_status(answer(401, page, "text/html")) == "HTTP 401 Unauthorized: Login required"
    assert (
        describe_status(answer(502, '{"message": "cut', "application/json")) == 'HTTP 502 Bad Gateway: {"message": "cut'
    )
