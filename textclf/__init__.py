"""textclf: text classification from YAML recipes on TensorFlow/Keras 3.

Importing the package is cheap: TensorFlow is imported only by the modules that
train or run models, so ``textclf --help`` answers at once.
"""

__version__ = "0.1.0"
