"""Analysis stage: firing, association, overlap, uncertainty and probes. Functions here return
plain results (arrays, dataclasses, dicts of numbers); files are the report package's job."""
