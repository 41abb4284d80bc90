"""transfer_gui: transfer learning of image classifiers you can click, watch and trust."""

__version__ = "0.1.0"
