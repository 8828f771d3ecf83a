"""Live preview: an index of the sources and an annotated MJPEG view of each, served over HTTP.

``hub`` takes the pipeline's results (a reference store per frame; a downscaled copy only while
someone watches, at most ``preview.fps`` a second) and encodes JPEGs on its own thread; ``snapshot``
makes the host copy of a CPU frame or of an NVDEC frame in GPU memory; ``draw`` annotates it;
``http`` serves the pages and streams; ``pages`` renders the HTML.
"""
