"""Neural-network building blocks: Module and containers, layers, attention and transformers,
initialisers, losses; ``nn.functional`` holds the functions the modules call.

>>> import neuronika
>>> from neuronika import nn
>>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
>>> len(model.parameters())
4
"""
from . import functional, init
from .layers import (CELU, ELU, GELU, SELU, Bilinear, Dropout, Embedding, Flatten, Hardsigmoid, Hardswish, Hardtanh,
                     Identity, LayerNorm, LeakyReLU, Linear, LogSigmoid, LogSoftmax, Mish, ReLU, ReLU6, Sigmoid, SiLU,
                     Softmax, Softplus, Softsign, Tanh, Unflatten)
from .conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .loss import (BCELoss, BCEWithLogitsLoss, CosineEmbeddingLoss, CrossEntropyLoss, CTCLoss, GaussianNLLLoss,
                   HingeEmbeddingLoss, HuberLoss, KLDivLoss, L1Loss, MAELoss, MarginRankingLoss, MSELoss,
                   MultiLabelSoftMarginLoss, MultiMarginLoss, NLLLoss, PoissonNLLLoss, SmoothL1Loss, SoftMarginLoss,
                   TripletMarginLoss)
from .module import Module, ModuleDict, ModuleList, Sequential, functional_call, load, parameter, stack_module_state
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, InstanceNorm1d, InstanceNorm2d, RMSNorm
from . import parallel
from .parallel import DistributedDataParallel
from .pooling import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveMaxPool1d, AdaptiveMaxPool2d, AvgPool1d,
                      AvgPool2d, AvgPool3d, MaxPool1d, MaxPool2d, MaxPool3d)
from .recurrent import GRU, GRUCell, LSTM, LSTMCell, RNN, RNNCell
from .spatial import Fold, PixelShuffle, PixelUnshuffle, Unfold, Upsample
from .attention import MultiheadAttention
from .transformer import (Transformer, TransformerDecoder, TransformerDecoderLayer, TransformerEncoder,
                          TransformerEncoderLayer)

__all__ = ["Module", "ModuleList", "ModuleDict", "Sequential", "load", "parameter", "functional_call",
           "stack_module_state", "init", "functional",
           "parallel", "DistributedDataParallel",
           "MSELoss", "L1Loss", "MAELoss", "BCELoss", "BCEWithLogitsLoss", "NLLLoss", "CrossEntropyLoss",
           "KLDivLoss", "HuberLoss", "SmoothL1Loss",
           "Linear", "Dropout", "Embedding", "LayerNorm", "Flatten", "Identity", "ReLU", "LeakyReLU",
           "Tanh", "Sigmoid", "Softplus", "GELU", "Softmax", "LogSoftmax", "BatchNorm1d", "BatchNorm2d",
           "Bilinear", "Unflatten", "ReLU6", "ELU", "SELU", "CELU", "SiLU", "Mish", "Hardtanh", "Hardsigmoid",
           "Hardswish", "Softsign", "LogSigmoid",
           "RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU", "Conv1d", "Conv2d", "Conv3d",
           "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d"]
__all__ += ["GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "RMSNorm", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
            "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "PixelShuffle", "PixelUnshuffle", "Upsample", "Unfold", "Fold"]
__all__ += ["MultiheadAttention", "Transformer", "TransformerEncoder", "TransformerDecoder",
            "TransformerEncoderLayer", "TransformerDecoderLayer"]
__all__ += ["ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]
__all__ += ["TripletMarginLoss", "MarginRankingLoss", "HingeEmbeddingLoss", "CosineEmbeddingLoss", "PoissonNLLLoss",
            "GaussianNLLLoss", "SoftMarginLoss", "MultiLabelSoftMarginLoss", "MultiMarginLoss", "CTCLoss"]
