"""recsys: the engine of the multimodal recommender studio.

Layers (data flows down, never back up): ``data`` (bundles, schema, validation, demo catalog),
``features`` (pretrained encoders and their cache), ``models`` (one ``Recommender`` interface),
``train``, ``evaluate``, ``explain``, and ``workspace`` (the folder the app reads).
The engine never imports Streamlit.
"""

__version__ = "0.1.0"
