"""Independent reference implementations: written from each evidence family's generative story in
plain numpy, never importing the engine, so that they test its modelling and not only its algebra."""
