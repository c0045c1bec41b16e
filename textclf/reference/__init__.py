"""NumPy reference nets: textclf's models re-implemented, forward and backward.

What lives where (nothing here imports TensorFlow except ``check``):

- ``rnn``, ``lstm``, ``gru``: one step of SimpleRNN (tanh/relu), LSTM and GRU
  (both ``reset_after``) cells, Keras' weight layout, with their backward step.
- ``recurrent``: a cell over time with Keras' masking, ``go_backwards`` and
  ``Bidirectional`` merge modes; backpropagation through time.
- ``layers``: embedding, Conv1D, length-masked max pooling, masked mean
  pooling, dense softmax, cross-entropy, each with its backward pass.
- ``activations``: Keras' activations and their derivatives.
- ``model``: ``NumpyModel``, a whole cnn/rnn token-id classifier.
- ``keras_weights``: Keras layers <-> specs and parameters.
- ``export``: the ``weights.npz`` a run directory holds; ``engine``: prediction
  from raw text without TensorFlow; ``vectorize``: ``TextVectorization`` in Python.
- ``gradcheck``: central-difference gradient checks; ``check``: Keras vs NumPy.
"""
