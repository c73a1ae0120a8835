"""FID, KID and IS under named protocols, with verified feature-extractor weights."""
