# Triton kernels of melnet_fast, installed as melnet_fast.kernels (never as a top-level 'kernels').
