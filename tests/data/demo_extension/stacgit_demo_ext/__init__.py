"""A third-party extension: ``demo:quality`` on items, from a source field, upper-cased;
its check (beyond the schema) rejects the value 'BAD'."""

from stacgit.extensions import Extension, Problem, add_uri

URI = "https://example.org/stac/demo/v1.0.0/schema.json"


class DemoExtension(Extension):
    name = "demo"
    schema_uri = URI
    prefixes = ("demo",)

    def apply(self, doc, config):
        if doc.get("type") == "Feature":
            add_uri(doc, URI)
            doc["properties"]["demo:quality"] = str(config.get("quality", "unknown")).upper()
        return doc

    def columns(self, config):
        return {"properties": {"demo:quality": "string"}}

    def check(self, doc):
        if (doc.get("properties") or {}).get("demo:quality") == "BAD":
            return [Problem(URI, "demo:quality must not be BAD", "/properties/demo:quality")]
        return []
