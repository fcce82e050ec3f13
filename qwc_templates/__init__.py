"""The .qwc templates, shipped inside the package as ``qwc_service.qwc_templates``.

Only data lives here (``*.qwc.xml`` and README.md); this file exists so that
``importlib.resources`` finds the directory in an installed wheel, as
``migrations/__init__.py`` does for the migrations.
"""
