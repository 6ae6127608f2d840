"""Create the template head (with eyes and teeth) as Blender objects."""

import bpy
import numpy as np

from .model.template import Template

HEAD_NAME = "MeshTalk Head"


def _mesh_object(name: str, vertices: np.ndarray, faces: np.ndarray, collection) -> bpy.types.Object:
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(vertices.tolist(), [], faces.tolist())
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    return obj


def add_head(template: Template, collection, location=(0.0, 0.0, 0.0)) -> bpy.types.Object:
    """Link the head, its eyes and upper teeth into `collection`; returns the head object.

    The eyes and teeth are children of the head, so moving the head moves them."""
    head = _mesh_object(HEAD_NAME, template.vertices, template.faces, collection)
    uv_layer = head.data.uv_layers.new(name="UVMap")
    uv_layer.data.foreach_set("uv", template.uvs.reshape(-1))
    head.data.shade_smooth()
    head.location = location
    for name, vertices, faces in (("Eyes", template.eyes_vertices, template.eyes_faces),
                                  ("Teeth", template.teeth_vertices, template.teeth_faces)):
        part = _mesh_object(f"{HEAD_NAME} {name}", vertices, faces, collection)
        part.data.shade_smooth()
        part.parent = head
    return head
