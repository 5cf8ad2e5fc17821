"""Stage `export`: the merged model as ONNX and TFLite (fp32, fp16, int8), its parity and the app bundle."""
