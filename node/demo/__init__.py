"""The end-to-end demo on embedded defaults (`datanet demo`)."""
