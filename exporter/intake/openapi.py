"""The intake described for the CRM's developers: an OpenAPI 3.1 document made from the same
pydantic models that validate each body (exporter.intake), so the two never drift apart.
Served at /intake/openapi.json; docs/intake.md is its manual."""
from ..profiles import customer_types
from . import accept as intake

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
PROBLEMS = {
    "type": "object", "required": ["error", "problems"],
    "properties": {
        "error": {"type": "string"},
        "problems": {"type": "array", "items": {
            "type": "object", "required": ["index", "field", "message"],
            "properties": {"index": {"type": ["integer", "null"], "description": "the event's place in `events`"},
                           "field": {"type": "string", "description": "e.g. order.emailAddress"},
                           "message": {"type": "string"}}}}}}
ACCEPTED = {"type": "object", "required": ["accepted", "duplicates", "test_orders", "deliveries"],
            "properties": {k: {"type": "integer", "minimum": 0}
                           for k in ("accepted", "duplicates", "test_orders", "deliveries")}}


def _error(description, schema=ERROR):
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def document(max_events, max_bytes):
    """The OpenAPI document of POST /intake/events."""
    schemas = intake.EventIn.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schemas.pop("$defs", {})
    components["Event"] = schemas
    components["Events"] = {"type": "object", "required": ["events"], "additionalProperties": False, "properties": {
        "events": {"type": "array", "minItems": 1, "maxItems": max_events,
                   "items": {"$ref": "#/components/schemas/Event"}}}}
    types = ", ".join(f"`{t.slug}` ({t.label})" for t in customer_types.CUSTOMER_TYPES)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Exporter intake", "version": "1",
                 "description": "The CRM posts order events here; each matching export profile exports them. "
                                "See docs/intake.md."},
        "paths": {"/intake/events": {"post": {
            "operationId": "postEvents",
            "summary": "Post one event, or several in {\"events\": [...]}",
            "description": f"The body is checked whole: one invalid event rejects the request and nothing is "
                           f"stored. At most {max_events} events and {max_bytes} bytes. `type` is a customer "
                           f"type: {types}. A repeated event `id` (from the same intake token: "
                           f"each token's ids are its own) is counted as a duplicate and not stored again.",
            "security": [{"intakeToken": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "oneOf": [{"$ref": "#/components/schemas/Event"}, {"$ref": "#/components/schemas/Events"}]}}}},
            "responses": {
                "202": {"description": "Stored (or counted as duplicates and test orders)",
                        "content": {"application/json": {"schema": ACCEPTED}}},
                "400": _error("Not JSON, or JSON nested too deeply"),
                "401": _error("No intake token, or not a valid one"),
                "413": _error(f"Body over {max_bytes} bytes"),
                "415": _error("Content-Type is not application/json"),
                "422": _error("An invalid event: each problem names the event's index and the field", PROBLEMS),
                "503": _error("The database is busy: nothing was stored, send the same request again"),
            }}}},
        "components": {
            "schemas": components,
            "securitySchemes": {"intakeToken": {
                "type": "http", "scheme": "bearer",
                "description": "An intake token from the Intake Tokens page or `exporter create-token NAME`"}}},
    }
